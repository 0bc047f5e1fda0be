"""Command-line entry point: ``brainscale <subcommand> ...``.

Subcommands: ``demo``, ``bench``, ``train``, ``map``.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]

DEFAULT_ALGORITHMS = "es_d_rtrl,bptt"


def _cmd_demo(args: argparse.Namespace) -> int:
    from brainscale.cli.demo import run_demo

    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if not algorithms:
        print("error: --algorithms is empty", file=sys.stderr)
        return 2
    run_demo(out_dir=args.out, epochs=args.epochs, quick=args.quick,
             algorithms=algorithms, seed=args.seed)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from brainscale.cli.bench import run_bench

    run_bench(args.out, only=args.only)
    return 0


def _cmd_map(args: argparse.Namespace) -> int:
    import json

    import os

    from brainscale.mapping import MissingDependencyError, check_map_dependencies, map_run
    from brainscale.train.checkpoint import CheckpointError
    from transforms.errors import CompileError
    from transforms.lowering.report import format_report

    try:
        check_map_dependencies(args.nir)        # before any work
        for out in (args.json, args.nir):
            folder = os.path.dirname(os.path.abspath(out)) if out else None
            if folder and not os.path.isdir(folder):
                raise FileNotFoundError(f"{out}: folder {folder} does not exist")
        report = map_run(args.run, args.profile, args.weight_bits, args.batch_size,
                         quantize=not args.no_quantize)
    except (CompileError, OSError, MissingDependencyError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nJSON report: {args.json}")
    if args.nir:
        from brainscale.mapping import write_run_nir

        try:
            write_run_nir(args.run, args.nir)
            print(f"NIR graph: {args.nir}")
        except ValueError as e:
            print(f"NIR export: {e}", file=sys.stderr)
            return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainscale",
        description="BrainScale: online learning (D-RTRL, ES-D-RTRL, BPTT) "
                    "for spiking neural networks in JAX.")
    from brainscale import __version__

    parser.add_argument("--version", action="version", version=f"brainscale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    from brainscale.cli.demo import FULL, QUICK  # light: numpy only at import

    demo = sub.add_parser(
        "demo",
        help="train a small recurrent LIF network on scikit-learn digits "
             "with ES-D-RTRL and BPTT and compare them",
        description="Train a small recurrent LIF network online on rate-coded "
                    "scikit-learn digits (8x8, bundled, no download) with each "
                    "algorithm; print a table of test accuracy, time per step, "
                    "compile time and memory; write demo.png and results.json.")
    demo.add_argument("--out", default="demo_out", metavar="DIR",
                      help="output directory (default: demo_out)")
    demo.add_argument("--epochs", type=int, default=None,
                      help=f"training epochs per algorithm (default: {FULL.epochs}, "
                           f"or {QUICK.epochs} with --quick)")
    demo.add_argument("--quick", action="store_true",
                      help="a tiny run (few steps, small network) for smoke tests")
    demo.add_argument("--algorithms", default=DEFAULT_ALGORITHMS,
                      help=f"comma-separated list among es_d_rtrl, d_rtrl, bptt "
                           f"(default: {DEFAULT_ALGORITHMS})")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(func=_cmd_demo)

    bench = sub.add_parser(
        "bench", help="quick versions of all benchmarks (fidelity, memory/time vs T, "
                      "side by side with braintrace, local rules) into one folder",
        description="Run the benchmarks of benchmarks/ with quick settings (under ten "
                    "minutes on 2 CPU cores): gradient fidelity across neuron models, "
                    "memory and time vs sequence length, BrainScale vs braintrace on "
                    "the lif-delta network (skipped if braintrace is not installed), and "
                    "every learning rule on spike-encoded digits.")
    bench.add_argument("--out", default="bench_out", metavar="DIR",
                       help="output directory (default: bench_out)")
    from brainscale.cli.bench import QUICK

    bench.add_argument("--only", nargs="+", choices=sorted(QUICK),
                       help="run only these benchmarks")
    bench.set_defaults(func=_cmd_bench)

    from transforms.lowering.hardware import builtin_profiles

    mp = sub.add_parser(
        "map", help="map a trained network onto a neuromorphic chip (cores, traffic, "
                    "energy, quantisation) and optionally export it to NIR",
        description="Partition the network of a run folder (written by brainscale train or "
                    "the examples) onto the cores of a hardware profile, place and route it "
                    "on the chip's mesh, and print what it costs: cores and the limit that "
                    "binds each, spikes crossing cores, hops, link load, energy per step and "
                    "per inference, whether the learning rule's state fits, and the task "
                    "accuracy before and after quantising the weights.")
    mp.add_argument("run", metavar="RUN_DIR", help="folder with checkpoint.msgpack")
    mp.add_argument("--profile", default="loihi1",
                    help=f"one of {', '.join(builtin_profiles())} or a JSON profile file "
                         "(default: loihi1)")
    mp.add_argument("--weight-bits", type=int, dest="weight_bits",
                    help="weight bit width (default: the profile's)")
    mp.add_argument("--batch-size", type=int, default=64, dest="batch_size",
                    help="samples for measuring spike rates and accuracy (default: 64)")
    mp.add_argument("--no-quantize", action="store_true", help="skip the accuracy check")
    mp.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    mp.add_argument("--nir", metavar="FILE", help="also export the network to NIR (HDF5)")
    mp.set_defaults(func=_cmd_map)

    from brainscale.cli.train import add_train_parser

    add_train_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
