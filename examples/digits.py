"""Recurrent LIF layers on spike-coded 8x8 digits: ES-D-RTRL next to BPTT.

The task is ``brainscale.tasks.digits_task`` (rate code by default: pixel
``j`` spikes at each of 24 steps with probability ``intensity_j``; the
label on the last third of the steps). The network is the task's default
``recurrent_snn``: 64 inputs -> 128 recurrent LIF -> 128 recurrent LIF ->
leaky readout. Every algorithm starts from the same initial weights and
sees the same batches (both fixed by ``--seed``); each is trained by
``brainscale.train.fit`` into ``--out/<algorithm>``.

Printed: the test accuracy each algorithm reaches, its wall time, and the
gap of every algorithm to BPTT (in accuracy points).

    python examples/digits.py [--quick] [--algorithms es_d_rtrl,bptt]
        [--steps 660] [--encoding rate] [--hidden 128,128] [--seed 0] [--out digits_out]
    python examples/digits.py --encoding latency --hidden 128,128,128 \
        --algorithms es_d_rtrl,es_d_rtrl:layers,bptt
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

from brainscale.tasks.digits_task import ENCODINGS, make_task
from brainscale.train.compare import learner_options
from brainscale.train.config import TrainConfig
from brainscale.train.runner import fit

# 30 epochs of the 1438 training digits in batches of 64 (22 steps each).
FULL = dict(task={}, model={}, steps=660, batch_size=64, lr=4e-3, decay=0.9, eval_every=110)
# Short sequences, a small network and a few steps: a smoke test of the pipeline.
QUICK = dict(task={"T": 8, "max_eval": 32}, model={"hidden": [16, 16]}, steps=3,
             batch_size=16, lr=4e-3, decay=0.9, eval_every=3)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny network, a few steps, seconds")
    p.add_argument("--algorithms", default="es_d_rtrl,bptt",
                   help="comma-separated: es_d_rtrl, d_rtrl, bptt, es_d_rtrl:layers (paths "
                        "through the layers above), es_d_rtrl:adaptive, tbptt:K")
    p.add_argument("--hidden", help="recurrent layer sizes, e.g. 128,128,128 (default 128,128)")
    p.add_argument("--steps", type=int, help="training steps (batches) per algorithm")
    p.add_argument("--encoding", default="rate", choices=ENCODINGS)
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    p.add_argument("--out", default="digits_out")
    return p.parse_args(argv)


def main(argv=None, log=print):

    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if not algorithms:
        raise SystemExit("--algorithms: none given")
    for a in algorithms:
        try:
            learner_options(a, base["decay"])
        except ValueError as e:
            raise SystemExit(f"--algorithms: {e}") from None
    steps = int(args.steps or base["steps"])
    task = make_task(encoding=args.encoding, **base["task"])
    model_options = dict(base["model"])
    if args.hidden:
        try:
            model_options["hidden"] = [int(n) for n in args.hidden.split(",")]
        except ValueError:
            raise SystemExit(f"--hidden: layer sizes as integers, e.g. 128,128,128; "
                             f"got {args.hidden!r}") from None
    model = task.resolve_model(model_options)
    log(f"digits ({args.encoding} code, T={task.options['T']}): {len(model['hidden'])} "
        f"recurrent LIF layers {model['hidden']}, batch {base['batch_size']}, {steps} steps, "
        f"seed {args.seed}")

    results = {}
    for algo in algorithms:
        run_dir = os.path.join(args.out, algo.replace(":", "_"))
        if os.path.isdir(run_dir):
            shutil.rmtree(run_dir)           # a fresh run: fit refuses to overwrite one
        name, learner = learner_options(algo, base["decay"])
        cfg = TrainConfig(task="digits", task_options=dict(task.options), model=model_options,
                          algorithm=name, learner=learner,
                          lr=base["lr"], batch_size=base["batch_size"], steps=steps,
                          eval_every=min(base["eval_every"], steps), checkpoint_every=steps,
                          seed=args.seed, out_dir=run_dir)
        t0 = time.perf_counter()
        res = fit(cfg, task=task, progress=not args.quick, plots=not args.quick, log=log)
        results[algo] = {"accuracy": res["final"]["accuracy"], "loss": res["final"]["loss"],
                         "wall_s": time.perf_counter() - t0, "history": res["history"]}

    log("")
    log(f"{'algorithm':<18} {'test accuracy':>13} {'vs bptt (points)':>17} {'time s':>7}")
    ref = results.get("bptt", {}).get("accuracy")
    for algo, r in results.items():
        gap = "" if ref is None or algo == "bptt" else f"{100 * (r['accuracy'] - ref):+.2f}"
        r["gap_to_bptt"] = None if gap == "" else 100 * (r["accuracy"] - ref)
        log(f"{algo:<18} {r['accuracy']:>13.4f} {gap:>17} {r['wall_s']:>7.0f}")
    return results


if __name__ == "__main__":
    main()
