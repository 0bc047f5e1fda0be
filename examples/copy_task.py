"""The copy task with a GRU: D-RTRL against BPTT over growing lags.

For each lag, every algorithm trains the same GRU (same seed, so the same
initial weights) on the same batches (``batch = f(seed, step)``) through
``brainscale.train.fit``. D-RTRL keeps only the diagonal of the recurrent
Jacobian in its eligibility traces, so the credit it assigns through the
lag is approximate; BPTT is the exact gradient. Printed per algorithm and
lag: the final evaluation loss on the copied tokens (chance after learning
the alphabet: ln 8 ≈ 2.08), per-token accuracy, and median time per
training step. Written to ``--out``: ``copy_task.png`` (loss curves),
``results.json`` and one ``fit`` run directory per lag and algorithm.

    python examples/copy_task.py [--quick] [--steps 1000] [--lags 10,50,100]
                                 [--algorithms d_rtrl,bptt] [--out copy_task_out]
"""
from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

from brainscale.tasks.copy_task import CHANCE_LOSS, make_task
from brainscale.train.compare import RunInterrupted, run_algorithm

FULL = dict(steps=1000, lags="10,50,100", hidden=128, batch_size=32, n_eval=256, lr=3e-3)
QUICK = dict(steps=30, lags="5", hidden=16, batch_size=8, n_eval=16, lr=3e-3, eval_every=10)


def run_one(lag, algorithm, args, log=print):
    """One ``fit`` run; returns its numbers and curves (training loss per
    copied token: the log's ``loss_per_label``)."""
    task = make_task(lag=lag, n_eval=args.n_eval)
    T = 2 * task.options["n_tokens"] + lag
    run = run_algorithm(task, "copy", algorithm, os.path.join(args.out, f"lag{lag}", algorithm),
                        steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        eval_every=args.eval_every, model={"n_hidden": args.hidden},
                        seed=args.seed, progress=not args.quick, resume=args.resume)
    final = run.result["final"]
    row = {"lag": lag, "T": T, "algorithm": algorithm, "steps": args.steps,
           "final_loss": final["loss"], "final_accuracy": final["accuracy"],
           "ms_per_step": run.ms_per_step, "wall_s": run.wall_s, "resumed_from": run.resumed_from,
           "train_step": [r["step"] for r in run.train],
           "train_token_loss": [r["loss_per_label"] for r in run.train],
           "eval_step": [r["step"] for r in run.evals],
           "eval_loss": [r["loss"] for r in run.evals],
           "eval_accuracy": [r["accuracy"] for r in run.evals]}
    log(f"lag {lag:4d} (T {T:4d})  {algorithm:9s}  loss {row['final_loss']:.3f}  "
        f"accuracy {row['final_accuracy']:.3f}  {row['ms_per_step']:.0f} ms/step  "
        f"({run.wall_s:.0f} s)")
    return row


def _smooth(y, n):
    if n <= 1 or len(y) < n:
        return np.asarray(y)
    return np.convolve(y, np.ones(n) / n, mode="valid")


def plot(rows, path):
    """One panel per lag: training loss per copied token (moving average)
    and evaluation loss (markers) for each algorithm; dashed: ln 8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lags = sorted({r["lag"] for r in rows})
    fig, axes = plt.subplots(1, len(lags), figsize=(4.2 * len(lags), 3.4), squeeze=False)
    for ax, lag in zip(axes[0], lags):
        mine = [r for r in rows if r["lag"] == lag]
        for i, r in enumerate(mine):
            color = f"C{i}"
            n = max(1, len(r["train_step"]) // 50)
            y = _smooth(r["train_token_loss"], n)
            ax.plot(r["train_step"][n - 1:n - 1 + len(y)], y, color=color, alpha=0.6,
                    label=f"{r['algorithm']} (train)")
            ax.plot(r["eval_step"], r["eval_loss"], "o", color=color, ms=3,
                    label=f"{r['algorithm']} (eval)")
        ax.axhline(CHANCE_LOSS, color="k", ls="--", lw=0.8, label="ln 8")
        ax.set_title(f"copy task, lag {lag} (T = {mine[0]['T']})")
        ax.set_xlabel("training step")
        ax.set_ylabel("cross-entropy per copied token")
        ax.set_ylim(0, max(2.6, CHANCE_LOSS + 0.3))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(rows):
    head = "| lag | T | algorithm | eval loss | per-token accuracy | ms / step |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['lag']} | {r['T']} | {r['algorithm']} | {r['final_loss']:.3f} | "
                     f"{r['final_accuracy']:.3f} | {r['ms_per_step']:.0f} |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    p.add_argument("--steps", type=int, help="training steps per run")
    p.add_argument("--lags", help="comma-separated lags (T = 20 + lag)")
    p.add_argument("--algorithms", default="d_rtrl,bptt")
    p.add_argument("--hidden", type=int, help="GRU units")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--n-eval", type=int, help="evaluation trials")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="copy_task_out")
    p.add_argument("--resume", action="store_true",
                   help="continue each algorithm's run in --out from its last checkpoint "
                        "(one per evaluation; a finished run is read back, not retrained)")
    args = p.parse_args(argv)
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.lags = [int(s) for s in str(args.lags).split(",") if s.strip()]
    args.algorithms = [s.strip() for s in args.algorithms.split(",") if s.strip()]
    if args.eval_every is None:
        args.eval_every = max(1, args.steps // 20)
    return args


def main(argv=None, log=print):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    log(f"copy task, GRU {args.hidden}, batch {args.batch_size}, {args.steps} steps, "
        f"adam lr {args.lr}; chance loss ln 8 = {math.log(8):.3f}")
    rows = [run_one(lag, algo, args, log) for lag in args.lags for algo in args.algorithms]
    png = os.path.join(args.out, "copy_task.png")
    plot(rows, png)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "results": rows}, f)
    log("")
    log(format_table(rows))
    log(f"wrote {png} and {os.path.join(args.out, 'results.json')}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except RunInterrupted as e:
        raise SystemExit(str(e))
