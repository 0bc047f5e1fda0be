"""The online learners against truncated BPTT at equal memory.

A user whose sequences do not fit BPTT's memory truncates: TBPTT-k carries
the hidden state forward but each loss's gradient back through its chunk of
k steps only, so memory grows with k. The online learners (ES-D-RTRL,
D-RTRL) keep the whole temporal path in traces whose size does not depend
on T. The claim tested: once the delay a task must bridge exceeds k, the
online learners beat TBPTT-k at equal or lower memory.

For each delay of ``--delays`` (DMTS, evidence accumulation; ``smnist`` has
its own fixed length) every algorithm trains from the same initial weights
on the same batches (``brainscale.train.compare``); printed per run: held-out
accuracy (final and best), XLA's temp and total memory of one training step
(read from the compiled program, independent of load) and ms per step. Then,
for each k, the crossover delay: the smallest delay from which on ES-D-RTRL
is ahead of TBPTT-k at no more memory (``--margin`` points; with several
``--seeds``, in the mean over them). Written to
``--out``: ``vs_truncated.csv``, ``vs_truncated.json`` and
``accuracy_vs_memory.png`` (one panel per delay).

    python benchmarks/vs_truncated.py --task dmts --delays 50 200 1000 \\
        --algorithms es_d_rtrl d_rtrl tbptt:10 tbptt:50 tbptt:200 bptt --steps 400
    python benchmarks/vs_truncated.py --quick
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import write_csv  # noqa: E402

from brainscale.train.compare import (RunInterrupted, learner_options,  # noqa: E402
                                      parse_algorithm, program_memory, run_algorithm)
from brainscale.train.plot_labels import algorithm_label as label  # noqa: E402
from brainscale.train.registry import make_task  # noqa: E402

TASKS_WITH_DELAY = ("dmts", "evidence")
QUICK = dict(delays=[4.0, 24.0], algorithms=["es_d_rtrl", "tbptt:4", "bptt"],
             steps=4, batch_size=8, lr=1e-2, eval_every=2)
TASK_OPTIONS = {      # each task's defaults here (shorter cues than the tasks' own)
    "dmts": {"sample": 200.0, "test": 200.0, "n_eval": 256},
    "evidence": {"n_eval": 256},
    "smnist": {"pixels_per_step": 4},
    "psmnist": {"pixels_per_step": 4},
}
QUICK_MODEL = {"dmts": {"hidden": [8]}, "evidence": {"n_rec": 10},
               "smnist": {"hidden": [8]}, "psmnist": {"hidden": [8]}}
QUICK_TASK_OPTIONS = {
    "dmts": {"fixation": 2.0, "sample": 6.0, "test": 6.0, "n_eval": 16},
    "evidence": {"n_cues": 2, "cue_duration": 3.0, "cue_spacing": 4.0, "recall": 4.0,
                 "n_per_group": 2, "n_eval": 16},
    "smnist": {"pixels_per_step": 28, "max_eval": 16},
    "psmnist": {"pixels_per_step": 28, "max_eval": 16},
}


def run_delay(args, delay, log):
    """Every algorithm at one delay, for each seed: one row each."""
    options = dict(args.task_options)
    if delay is not None:
        options["delay"] = delay
    task = make_task(args.task, options)
    rows = []
    for seed in args.seeds:
        for spec in args.algorithms:
            name, learner = learner_options(spec, args.decay)
            out = os.path.join(args.out, f"delay{delay:g}" if delay is not None else "run",
                               spec if len(args.seeds) == 1 else f"{spec}_seed{seed}")
            run = run_algorithm(task, args.task, name, out.replace(":", "_"),
                                steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                eval_every=args.eval_every, model=args.model,
                                learner=learner, seed=seed, resume=args.resume)
            xs, ys = task.train_batch(seed, 0, args.batch_size)
            mem = program_memory(run, xs, ys)
            row = {"task": args.task, "delay": delay, "T": int(xs.shape[0]), "algorithm": spec,
                   "seed": seed, "final_accuracy": run.final_accuracy,
                   "best_accuracy": run.best_accuracy, "temp_MiB": mem["temp"],
                   "total_MiB": mem["total"], "ms_per_step": run.ms_per_step,
                   "wall_s": run.wall_s, "resumed_from": run.resumed_from}
            rows.append(row)
            log(f"{args.task} delay {delay} (T {row['T']}) seed {seed}  {label(spec):10s} "
                f"accuracy {row['final_accuracy']:.3f} (best {row['best_accuracy']:.3f})  "
                f"temp {row['temp_MiB']:.2f} MiB, total {row['total_MiB']:.2f} MiB  "
                f"{row['ms_per_step']:.0f} ms/step")
    return rows


def seed_means(rows) -> dict:
    """{(delay, algorithm): row with the final and best accuracy averaged
    over its seeds (``final_sd``: their spread) and the largest memory}."""
    groups = {}
    for r in rows:
        groups.setdefault((r["delay"], r["algorithm"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        final = [r["final_accuracy"] for r in rs]
        out[key] = {**rs[0], "seeds": len(rs), "final_accuracy": float(np.mean(final)),
                    "final_sd": float(np.std(final))}
        for name, how in (("best_accuracy", np.mean), ("total_MiB", max), ("temp_MiB", max)):
            if name in rs[0]:
                out[key][name] = float(how([r[name] for r in rs]))
    return out


def crossovers(rows, margin: float, online: str = "es_d_rtrl") -> dict:
    """{tbptt spec: the smallest delay from which on ``online`` beats it by
    more than ``margin`` (mean over seeds) at no more total memory, or None}."""
    delays = sorted({r["delay"] for r in rows if r["delay"] is not None})
    at = seed_means(rows)
    out = {}
    for spec in sorted({r["algorithm"] for r in rows if r["algorithm"].startswith("tbptt")},
                       key=lambda s: parse_algorithm(s)[1]["k"]):
        wins = []
        for d in delays:
            a, b = at.get((d, online)), at.get((d, spec))
            wins.append(a is not None and b is not None and a["total_MiB"] <= b["total_MiB"]
                        and a["final_accuracy"] > b["final_accuracy"] + margin)
        first = next((i for i in range(len(delays)) if all(wins[i:])), None)
        out[spec] = None if first is None else delays[first]
    return out


def plot(rows, path):
    from brainscale.train.plots import pyplot, save_figure

    plt = pyplot()
    delays = sorted({r["delay"] for r in rows}, key=lambda d: (d is None, d or 0))
    fig, axes = plt.subplots(1, len(delays), figsize=(4 * len(delays), 3.4), squeeze=False)
    for ax, d in zip(axes[0], delays):
        for r in (r for r in seed_means(rows).values() if r["delay"] == d):
            ax.errorbar(r["total_MiB"], r["final_accuracy"], yerr=r["final_sd"], fmt="o",
                        ms=5, capsize=2)
            ax.annotate(label(r["algorithm"]), (r["total_MiB"], r["final_accuracy"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("memory of one training step (MiB, XLA)")
        ax.set_title(f"{rows[0]['task']}" + (f", delay {d:g}" if d is not None else ""))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out accuracy")
    save_figure(fig, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny DMTS, a few steps")
    p.add_argument("--task", choices=list(TASKS_WITH_DELAY) + ["smnist", "psmnist"])
    p.add_argument("--delays", type=float, nargs="+", help="task delays (ms = steps at dt 1)")
    p.add_argument("--algorithms", nargs="+",
                   help="es_d_rtrl, d_rtrl, e_prop, bptt, tbptt:K ...")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--decay", type=float, default=0.9, help="ES-D-RTRL's presynaptic decay")
    p.add_argument("--margin", type=float, default=0.02,
                   help="accuracy lead that counts as beating TBPTT (default 2 points)")
    p.add_argument("--task-options", type=json.loads,
                   help="JSON object of task options (default: shorter cues, see TASK_OPTIONS)")
    p.add_argument("--model", type=json.loads, help="JSON object of model options")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="one run per seed; the crossover compares the seeds' mean")
    p.add_argument("--out", default="bench_out/vs_truncated")
    p.add_argument("--resume", action="store_true",
                   help="continue each algorithm's run in --out from its last checkpoint "
                        "(one per evaluation; a finished run is read back, not retrained)")
    args = p.parse_args(argv)
    full = dict(delays=[50.0, 200.0, 1000.0],
                algorithms=["es_d_rtrl", "d_rtrl", "tbptt:10", "tbptt:50", "tbptt:200", "bptt"],
                steps=400, batch_size=32, lr=5e-3, eval_every=100)
    args.task = args.task or "dmts"
    for k, v in (QUICK if args.quick else full).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.task_options is None:
        args.task_options = dict((QUICK_TASK_OPTIONS if args.quick else TASK_OPTIONS)[args.task])
    if args.model is None:
        args.model = dict(QUICK_MODEL[args.task]) if args.quick else {}
    for spec in args.algorithms:
        try:
            parse_algorithm(spec)
        except ValueError as e:
            p.error(str(e))
    if args.task not in TASKS_WITH_DELAY:
        args.delays = [None]
    for name in ("task_options", "model"):
        if not isinstance(getattr(args, name), dict):
            p.error(f"--{name.replace('_', '-')} must be a JSON object")
    return args


def main(argv=None, log=print):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = [r for d in args.delays for r in run_delay(args, d, log)]
    if len(args.seeds) > 1:
        for r in sorted(seed_means(rows).values(), key=lambda r: (r["delay"] or 0,)):
            log(f"{args.task} delay {r['delay']} {label(r['algorithm']):10s} mean of "
                f"{r['seeds']} seeds {r['final_accuracy']:.3f} +- {r['final_sd']:.3f}, "
                f"total {r['total_MiB']:.2f} MiB")
    cross = crossovers(rows, args.margin) if args.task in TASKS_WITH_DELAY else {}
    for spec, d in cross.items():
        log(f"crossover vs {label(spec)}: " + (
            f"ES-D-RTRL ahead by > {args.margin:.0%} at no more memory from delay {d:g} on"
            if d is not None else "not reached in this sweep"))
    write_csv(os.path.join(args.out, "vs_truncated.csv"), rows)
    with open(os.path.join(args.out, "vs_truncated.json"), "w") as f:
        json.dump({"args": vars(args), "rows": rows,
                   "crossover": {k: (None if v is None or math.isnan(v) else v)
                                 for k, v in cross.items()}}, f, indent=1)
    plot(rows, os.path.join(args.out, "accuracy_vs_memory.png"))
    return rows, cross


if __name__ == "__main__":
    try:
        main()
    except RunInterrupted as e:
        raise SystemExit(str(e))
