"""What each learner option buys, on the lif-delta network (B = 32).

- ES-D-RTRL ``window``: the weight-gradient factors of that many steps are
  contracted in one matmul per op (same gradient).
- D-RTRL ``trace_dtype=bfloat16``: traces in half the memory.
- ``skip_silent``: no contraction on steps without loss (here the loss is
  given in the last 10% of the steps only).
- ``readout_paths``: the filtered traces through the leaky readout.

Each configuration runs in its own process; the table gives the median
seconds per training step (reset + gradient over T + SGD), the first call and
XLA's temp memory.

    python benchmarks/options.py --out bench_out/options [--T 1000]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CONFIGS = {
    **{f"es_d_rtrl window {k}": ("es_d_rtrl", {"window": k}, False) for k in (1, 2, 4, 8, 16, 32)},
    "es_d_rtrl no readout paths": ("es_d_rtrl", {"readout_paths": False}, False),
    "d_rtrl float32": ("d_rtrl", {}, False),
    "d_rtrl bfloat16 traces": ("d_rtrl", {"trace_dtype": "bfloat16"}, False),
    "d_rtrl no readout paths": ("d_rtrl", {"readout_paths": False}, False),
    "d_rtrl loss in last 10%, skip_silent": ("d_rtrl", {"skip_silent": True}, True),
    "d_rtrl loss in last 10%, no skip": ("d_rtrl", {"skip_silent": False}, True),
}


def run_one(name, T, B, reps):
    import jax
    import jax.numpy as jnp
    import optax
    import brainscale as bs
    import lif_delta as ld

    algo, kw, late_loss = CONFIGS[name]
    kw = dict(kw)
    if kw.get("trace_dtype") == "bfloat16":
        kw["trace_dtype"] = jnp.bfloat16
    xs, ys = ld.make_data(T, B)
    if late_loss:
        ys = ys.at[: int(0.9 * T)].set(-1)
    kw = dict(kw, decay=0.99) if algo == "es_d_rtrl" else kw
    learner = bs.online(ld.model(ld.init_params(0)), algorithm=algo, optimizer=optax.sgd(1e-3),
                        **kw)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    t0 = time.time()
    jax.block_until_ready(learner.train_sequence(state, xs, ys)[1]["loss"])
    first = time.time() - t0
    jax.block_until_ready(learner.train_sequence(state, xs, ys)[1]["loss"])
    times = []
    for _ in range(reps):
        t0 = time.time()
        jax.block_until_ready(learner.train_sequence(state, xs, ys)[1]["loss"])
        times.append(time.time() - t0)
    temp = learner.train_sequence.lower(state, xs, ys).compile().memory_analysis()
    return dict(config=name, T=T, B=B, step_s=float(np.median(times)), first_call_s=first,
                temp_MiB=temp.temp_size_in_bytes / 2 ** 20, device=str(jax.devices()[0]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/options")
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.T, args.B, args.reps)))
        return
    from common import Progress, md_table, write_csv
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    progress = Progress(len(args.configs))
    for name in args.configs:
        i = progress.start(f"{name} T={args.T}")
        res = subprocess.run([sys.executable, __file__, "--one", name, "--T", str(args.T),
                              "--B", str(args.B), "--reps", str(args.reps)],
                             capture_output=True, text=True)
        row = (json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else
               dict(config=name, error=(res.stderr.strip().splitlines() or ["?"])[-1][:200]))
        rows.append(row)
        progress.done(i, f"error: {row['error']}" if "error" in row else
                      f"{row['step_s']:.3f} s/step, first call {row['first_call_s']:.2f} s, "
                      f"temp {row['temp_MiB']:.1f} MiB")
    write_csv(out / "options.csv", rows, sorted({k for r in rows for k in r}))
    table = [[r["config"], f"{r['step_s']:.3f}", f"{r['first_call_s']:.2f}", f"{r['temp_MiB']:.1f}"]
             if "error" not in r else [r["config"], "error: " + r["error"], "", ""] for r in rows]
    (out / "options.md").write_text(
        f"# Learner options on lif-delta (T = {args.T}, B = {args.B})\n\ncommand: "
        f"`{' '.join(sys.argv)}`\n\n" + md_table(["configuration", "s / step", "first call s",
                                                   "XLA temp MiB"], table) + "\n")


if __name__ == "__main__":
    main()
