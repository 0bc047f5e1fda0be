"""How much of the exact gradient a factorised trace can hold, on a task.

Two measurements on one batch of a registered task's network (default:
sequential MNIST, 4 pixels per step, the recurrent ALIF layer of
``examples/mnist.py``), at initialisation and after ``--train`` BPTT steps:

1. The rank of the exact gradient, per sample: BPTT's gradient of each
   trained weight for one sample at a time, its best rank-r approximation
   (SVD) for r in ``--ranks``, and the cosine of their batch sum to the
   batch gradient. A trace factorised into r (input, neuron) pairs per
   sample can at best reach this.
2. What each learner reaches: the cosine and norm ratio of its gradient to
   BPTT's (``--algorithms``: ES-D-RTRL with its fixed input decay, low-rank
   D-RTRL at each rank, D-RTRL), from the same weights and batch.

    python benchmarks/gradient_rank.py
    python benchmarks/gradient_rank.py --train 300
    python benchmarks/gradient_rank.py --quick
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from brainscale.train.compare import learner_options  # noqa: E402
from brainscale.train.config import TrainConfig  # noqa: E402
from brainscale.train.runner import build  # noqa: E402

QUICK = {"task": "smnist", "task_options": {"pixels_per_step": 28, "max_eval": 8},
         "model": {"hidden": [6]}, "batch": 3, "ranks": [1, 2, 6], "train": 0,
         "algorithms": ["low_rank_d_rtrl:1", "low_rank_d_rtrl:18", "d_rtrl"]}


def config(args, spec, batch):
    name, learner = learner_options(spec, args.decay)
    return TrainConfig(task=args.task, task_options=args.task_options, model=args.model,
                       algorithm=name, learner=learner, lr=args.lr, batch_size=batch,
                       steps=max(args.train, 1), seed=args.seed, out_dir=args.out)


def weight_leaves(grads) -> dict:
    """{path: 2-D gradient} of the trained matrices (vectors are rank one)."""
    return {jax.tree_util.keystr(p): np.asarray(g, np.float64)
            for p, g in jax.tree_util.tree_flatten_with_path(grads)[0] if np.ndim(g) == 2}


def rank_profile(task, params, xs, ys, args) -> list[dict]:
    """Per weight matrix and rank r: cosine of sum_b (best rank-r of the
    sample's exact gradient) to the batch's exact gradient, and the mean
    per-sample cosine."""
    _, one, state = build(config(args, "bptt", 1), task)
    state = state._replace(params=params)
    per = [weight_leaves(one.sequence_grad(one.reset(state), xs[:, b:b + 1], ys[:, b:b + 1])[0])
           for b in range(xs.shape[1])]
    rows = []
    for path in per[0]:
        full = sum(p[path] for p in per)
        for r in args.ranks:
            approx = []
            for p in per:
                u, s, vt = np.linalg.svd(p[path], full_matrices=False)
                approx.append((u[:, :r] * s[:r]) @ vt[:r])
            rows.append({"weight": path, "rank": r,
                         "batch_cos": common.cosine(sum(approx), full),
                         "sample_cos": float(np.mean([common.cosine(a, p[path])
                                                      for a, p in zip(approx, per)]))})
    return rows


def fidelity(task, params, xs, ys, ref, args) -> list[dict]:
    rows = []
    for spec in args.algorithms:
        _, learner, state = build(config(args, spec, xs.shape[1]), task)
        state = state._replace(params=params)
        got = weight_leaves(learner.sequence_grad(learner.reset(state), xs, ys)[0])
        for path, g in got.items():
            rows.append({"algorithm": spec, "weight": path, "cos": common.cosine(g, ref[path]),
                         "ratio": common.ratio(g, ref[path])})
    return rows


def main(argv=None, log=print):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    task, ref_learner, state = build(config(args, "bptt", args.batch))
    out = {"command": common.command_line(__file__, argv), **common.device_info(), "at": {}}
    trained = 0
    for stop in sorted({0, args.train}):
        for step in range(trained, stop):
            xs, ys = task.train_batch(args.seed, step, args.batch)
            state, _ = ref_learner.train_sequence(state, jnp.asarray(xs), jnp.asarray(ys))
        trained = stop
        xs, ys = (jnp.asarray(a) for a in task.train_batch(args.seed, 10 ** 6, args.batch))
        ref = weight_leaves(ref_learner.sequence_grad(ref_learner.reset(state), xs, ys)[0])
        ranks = rank_profile(task, state.params, xs, ys, args)
        fid = fidelity(task, state.params, xs, ys, ref, args)
        out["at"][str(stop)] = {"rank": ranks, "fidelity": fid}
        log(f"after {stop} BPTT steps: the exact per-sample gradient at rank r "
            "(batch cosine / mean per-sample cosine)")
        for r in ranks:
            log(f"  {r['weight']:36s} r {r['rank']:2d}: {r['batch_cos']:.3f} / "
                f"{r['sample_cos']:.3f}")
        log("  each learner's gradient against BPTT's (cosine / norm ratio)")
        for r in fid:
            log(f"  {r['algorithm']:20s} {r['weight']:36s} {r['cos']:.3f} / {r['ratio']:.3f}")
    with open(os.path.join(args.out, "gradient_rank.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="smnist")
    p.add_argument("--task-options", type=json.loads, default={"pixels_per_step": 4},
                   help="JSON object (default: 4 pixels per step)")
    p.add_argument("--model", type=json.loads, default={}, help="JSON object of model options")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--train", type=int, default=0, help="BPTT steps before the second look")
    p.add_argument("--algorithms", nargs="+",
                   default=["es_d_rtrl", "low_rank_d_rtrl:1", "low_rank_d_rtrl:2",
                            "low_rank_d_rtrl:4", "d_rtrl"])
    p.add_argument("--decay", type=float, default=0.9, help="ES-D-RTRL's decay")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam's rate for the BPTT steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="a tiny network (6 ALIF neurons: rank 6 of a gradient and rank 18 "
                        "of the traces are full rank)")
    p.add_argument("--out", default="bench_out/gradient_rank")
    args = p.parse_args(argv)
    if args.quick:
        given = set(argv or [])
        for key, value in QUICK.items():
            if f"--{key.replace('_', '-')}" not in given:
                setattr(args, key, value)
    return args


if __name__ == "__main__":
    main()
