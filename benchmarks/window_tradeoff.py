"""ES-D-RTRL's window: time per step against XLA temp memory.

A window of k steps runs one VJP and one contraction over k x B rows
(``brainscale/online_sequence.py``): larger products run faster on a CPU,
but the window's per-step values (hidden states, held products, factors) are
stacked, so XLA's temp memory grows about linearly in k x B x neurons while
staying flat in T. This prints, for each window, the median ms per time step
of ``learner.train_sequence`` on the lif-delta network, the compiled
program's temp bytes and its XLA compile seconds; the default window is
marked.

    python benchmarks/window_tradeoff.py --T 1000 --B 32 --size 100 200 10 --windows 1 2 4 8
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import lif_delta as ld  # noqa: E402
import brainscale as bs  # noqa: E402


def measure(T, B, size, window, readout_paths=False, reps=5, decay=0.99):
    """(ms per time step, XLA temp MiB, XLA compile s) for one window."""
    learner, state, xs, ys = ld.es_setup(T, B, size, window, readout_paths, decay)
    lowered = learner.train_sequence.lower(state, xs, ys)
    t = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    for _ in range(2):
        jax.block_until_ready(compiled(state, xs, ys))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(compiled(state, xs, ys))
        times.append(time.perf_counter() - t)
    temp = compiled.memory_analysis().temp_size_in_bytes / 2 ** 20
    return float(np.median(times)) * 1e3 / T, temp, compile_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ld.add_network_args(ap, T=1000)
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--readout-paths", action="store_true", help="the default learner's paths")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    if min(args.windows) < 1:
        ap.error(f"--windows must be >= 1, got {args.windows}")
    auto = bs.es_d_rtrl().window_for(args.T, args.B)
    size = tuple(args.size)
    print(f"ES-D-RTRL window trade-off: lif-delta {size[0]}-{size[1]}-{size[1]}-{size[2]}, "
          f"B {args.B}, T {args.T}, readout paths {'on' if args.readout_paths else 'off'}, "
          f"jax {jax.__version__} {jax.devices()[0]}")
    print("| window | rows (k x B) | ms per step | XLA temp MiB | XLA compile s |\n"
          "|---|---|---|---|---|")
    for k in sorted(set(args.windows) | {auto}):
        ms, temp, comp = measure(args.T, args.B, size, k, args.readout_paths, args.reps)
        mark = " (default)" if k == auto else ""
        print(f"| {k}{mark} | {k * args.B} | {ms:.3f} | {temp:.4g} | {comp:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
