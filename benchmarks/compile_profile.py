"""Where the time before the first result goes: build, initial state,
tracing + lowering, XLA's compile and the first run, for BrainScale and
(when installed) braintrace on the identical lif-delta network.

The peer's rows come from its own jit: build (its learner and states), the
first call (tracing, lowering, XLA, run) and, lowered again, XLA's compile
alone. Each library and algorithm runs in its own process so that no cache
is shared; the ``lines`` column is the StableHLO program's size.

    python benchmarks/compile_profile.py --T 100 --algos bptt es_d_rtrl d_rtrl
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lif_delta as ld  # noqa: E402

PHASES = ("build", "init", "trace + lower", "XLA compile", "first run")


def brainscale_phases(algo, T, B, size):
    import jax
    import optax
    import common
    import brainscale as bs

    n_in, n_rec, n_out = size
    xs, ys = ld.make_data(T, B, 1, n_in=n_in, n_out=n_out)
    params = ld.init_params(0, n_in, n_rec, n_out)
    t = [time.perf_counter()]
    learner = bs.online(ld.model(params), common.algorithm(algo, 0.99), optimizer=optax.sgd(1e-3))
    t.append(time.perf_counter())
    state = jax.block_until_ready(learner.init(jax.random.PRNGKey(0), xs[0]))
    t.append(time.perf_counter())
    lowered = learner.train_sequence.lower(state, xs, ys)
    t.append(time.perf_counter())
    compiled = lowered.compile()
    t.append(time.perf_counter())
    jax.block_until_ready(compiled(state, xs, ys))
    t.append(time.perf_counter())
    return dict(zip(PHASES, (b - a for a, b in zip(t, t[1:])))), len(lowered.as_text().splitlines())


def peer_phases(algo, T, B, size):
    import jax
    import vs_braintrace as vb

    n_in, _, n_out = size
    xs, ys = ld.make_data(T, B, 1, n_in=n_in, n_out=n_out)
    net = vb.peer_model(0, size)
    t0 = time.perf_counter()
    fn = vb.peer_train_fn(net, algo, B, xs[0], 0.99)
    t1 = time.perf_counter()
    jax.block_until_ready(fn(xs, ys))
    t2 = time.perf_counter()
    lowered = fn.lower(xs, ys)
    t3 = time.perf_counter()
    lowered.compile()
    xla = time.perf_counter() - t3
    first = t2 - t1
    return ({"build": t1 - t0, "init": 0.0, "trace + lower": first - xla, "XLA compile": xla,
             "first run": float("nan")}, len(lowered.as_text().splitlines()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ld.add_network_args(ap)
    ap.add_argument("--algos", nargs="+", default=["bptt", "es_d_rtrl", "d_rtrl"],
                    choices=["bptt", "es_d_rtrl", "d_rtrl"])
    ap.add_argument("--libs", nargs="+", default=["brainscale", "braintrace"],
                    choices=["brainscale", "braintrace"])
    ap.add_argument("--one", nargs=2, metavar=("LIB", "ALGO"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    size = tuple(args.size)
    if args.one:
        lib, algo = args.one
        fn = brainscale_phases if lib == "brainscale" else peer_phases
        print(json.dumps(fn(algo, args.T, args.B, size)))
        return 0
    print(f"Time to the first result: lif-delta {size[0]}-{size[1]}-{size[1]}-{size[2]}, "
          f"B {args.B}, T {args.T} (seconds; the peer's trace + lower includes its first run)")
    print("| library | algorithm | " + " | ".join(PHASES) + " | total | StableHLO lines |\n|"
          + "---|" * (len(PHASES) + 4))
    for algo in args.algos:
        for lib in args.libs:
            cmd = [sys.executable, __file__, "--T", str(args.T), "--B", str(args.B), "--size",
                   *map(str, size), "--one", lib, algo]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode:
                why = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
                print(f"| {lib} | {algo} | failed: {why} |")
                continue
            phases, lines = json.loads(run.stdout.strip().splitlines()[-1])
            total = sum(v for v in phases.values() if v == v)
            cells = " | ".join("-" if v != v else f"{v:.2f}" for v in phases.values())
            print(f"| {lib} | {algo} | {cells} | {total:.2f} | {lines} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
