"""Two recurrent LIF layers on spike-coded 8x8 digits: ES-D-RTRL next to BPTT.

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
        [--steps 660] [--encoding rate] [--seed 0] [--out digits_out]
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

from brainscale.tasks.digits_task import ENCODINGS, make_task
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
                   help="comma-separated: es_d_rtrl, d_rtrl, bptt")
    p.add_argument("--steps", type=int, help="training steps (batches) per algorithm")
    p.add_argument("--encoding", default="rate", choices=ENCODINGS)
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    p.add_argument("--out", default="digits_out")
    return p.parse_args(argv)


def main(argv=None, log=print):
    import brainscale as bs

    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = [a for a in algorithms if a not in bs.ALGORITHMS]
    if not algorithms or unknown:
        raise SystemExit(f"--algorithms: unknown {unknown or algorithms}; "
                         f"choose from {sorted(bs.ALGORITHMS)}")
    steps = int(args.steps or base["steps"])
    task = make_task(encoding=args.encoding, **base["task"])
    model = task.resolve_model(base["model"])
    log(f"digits ({args.encoding} code, T={task.options['T']}): 2 recurrent LIF layers "
        f"{model['hidden']}, batch {base['batch_size']}, {steps} steps, seed {args.seed}")

    results = {}
    for algo in algorithms:
        run_dir = os.path.join(args.out, algo)
        if os.path.isdir(run_dir):
            shutil.rmtree(run_dir)           # a fresh run: fit refuses to overwrite one
        cfg = TrainConfig(task="digits", task_options=dict(task.options), model=base["model"],
                          algorithm=algo,
                          learner={"decay": base["decay"]} if algo == "es_d_rtrl" else {},
                          lr=base["lr"], batch_size=base["batch_size"], steps=steps,
                          eval_every=min(base["eval_every"], steps), checkpoint_every=steps,
                          seed=args.seed, out_dir=run_dir)
        t0 = time.perf_counter()
        res = fit(cfg, task=task, progress=not args.quick, plots=not args.quick, log=log)
        results[algo] = {"accuracy": res["final"]["accuracy"], "loss": res["final"]["loss"],
                         "wall_s": time.perf_counter() - t0, "history": res["history"]}

    log("")
    log(f"{'algorithm':<10} {'test accuracy':>13} {'vs bptt (points)':>17} {'time s':>7}")
    ref = results.get("bptt", {}).get("accuracy")
    for algo, r in results.items():
        gap = "" if ref is None or algo == "bptt" else f"{100 * (r['accuracy'] - ref):+.2f}"
        r["gap_to_bptt"] = None if gap == "" else 100 * (r["accuracy"] - ref)
        log(f"{algo:<10} {r['accuracy']:>13.4f} {gap:>17} {r['wall_s']:>7.0f}")
    return results


if __name__ == "__main__":
    main()
