"""Delayed match-to-sample over a long delay with a recurrent ALIF network.

A sample direction (500 ms) must be held through the delay (1000 ms by
default) and compared with a test direction (500 ms); the answer (match /
non-match) is scored on the test window only. The network
(``brainscale.tasks.dmts_task.DMTSNet``: 200 recurrent ALIF neurons with an
adaptation time constant ``tau_a`` of 2 s, a leaky readout with a 200 ms
time constant) is trained through ``brainscale.train.fit`` with each
algorithm from the same initial weights on the same batches. Printed per
algorithm: the final and the best test accuracy on the fixed evaluation set,
the median time per training step, and the test accuracy at every
evaluation. Written to ``--out``: ``dmts.png`` (test accuracy per
evaluation), ``results.json`` and one ``fit`` run directory per algorithm.

    python examples/dmts.py [--quick] [--delay 1000] [--steps 800]
                            [--algorithms es_d_rtrl,bptt] [--out dmts_out]
"""
from __future__ import annotations

import argparse
import os

from brainscale.tasks.dmts_task import make_task
from brainscale.train.compare import RunInterrupted, run_algorithm, save_results
from brainscale.train.plots import plot_accuracy_curves

FULL = dict(delay=1000.0, fixation=10.0, sample=500.0, test=500.0, steps=800, batch_size=32,
            lr=5e-3, n_eval=512, eval_every=50, model={}, learner={"decay": 0.9})
QUICK = dict(delay=20.0, fixation=5.0, sample=20.0, test=20.0, steps=12, batch_size=8,
             lr=1e-2, n_eval=16, eval_every=4,
             model={"hidden": [16], "tau_a": 100.0}, learner={"decay": 0.9})


def run_one(algorithm, args, log=print):
    """One ``fit`` run; returns its numbers and accuracy curve."""
    task = make_task(delay=args.delay, fixation=args.fixation, sample=args.sample,
                     test=args.test, n_eval=args.n_eval)
    learner = dict(args.learner) if algorithm == "es_d_rtrl" else {}
    run = run_algorithm(task, "dmts", algorithm, os.path.join(args.out, algorithm),
                        steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        eval_every=args.eval_every, model=args.model, learner=learner,
                        seed=args.seed, progress=not args.quick, resume=args.resume)
    row = {"algorithm": algorithm, "delay": args.delay, "steps": args.steps,
           "final_accuracy": run.final_accuracy, "best_accuracy": run.best_accuracy,
           "ms_per_step": run.ms_per_step, "wall_s": run.wall_s, "resumed_from": run.resumed_from,
           "eval_step": [r["step"] for r in run.evals],
           "eval_accuracy": [r["accuracy"] for r in run.evals],
           "config": run.config.to_dict()}
    log(f"{algorithm:9s}  delay {args.delay:g} ms  accuracy {row['final_accuracy']:.3f} "
        f"(best {row['best_accuracy']:.3f})  {row['ms_per_step']:.0f} ms/step  "
        f"({run.wall_s:.0f} s)")
    log("  test accuracy by step: " + " ".join(
        f"{s}:{a:.3f}" for s, a in zip(row["eval_step"], row["eval_accuracy"])))
    return row


def plot(rows, path):
    plot_accuracy_curves(rows, path, f"DMTS, delay {rows[0]['delay']:g} ms", ylim=(0.4, 1.0),
                         hline=(0.95, "95 %"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short trials, tiny network, seconds")
    p.add_argument("--delay", type=float, help="delay in ms")
    p.add_argument("--steps", type=int, help="training steps per algorithm")
    p.add_argument("--algorithms", default="es_d_rtrl")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--n-eval", type=int, help="evaluation trials")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="dmts_out")
    p.add_argument("--resume", action="store_true",
                   help="continue each algorithm's run in --out from its last checkpoint "
                        "(one per evaluation; a finished run is read back, not retrained)")
    args = p.parse_args(argv)
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.algorithms = [s.strip() for s in args.algorithms.split(",") if s.strip()]
    return args


def main(argv=None, log=print):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    log(f"DMTS: delay {args.delay:g} ms, batch {args.batch_size}, {args.steps} steps, "
        f"adam lr {args.lr}, {args.n_eval} test trials")
    rows = [run_one(algo, args, log) for algo in args.algorithms]
    png = os.path.join(args.out, "dmts.png")
    plot(rows, png)
    log(f"wrote {png} and {save_results(args.out, args, rows)}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except RunInterrupted as e:
        raise SystemExit(str(e))
