"""The copy task as the RTRL literature runs it: binary strings whose length
L grows by one each time the recall loss falls below a threshold (Mujika et
al. 2018: 0.15 bits per recalled bit), a GRU, one ``train_sequence`` per
batch. The figure of merit is the length reached after a number of training
steps (and of data time steps, sum of T), per algorithm, from the same
initial weights on the same strings (batch ``s`` at length L is drawn from
``[seed, s]``).

Printed: the length each algorithm reached at a few points of the run and
the steps it needed to reach each length; written to ``--out``:
``copy_curriculum.json`` (every step's L and loss) and
``copy_curriculum.png`` (L against training steps and data time steps).

    python benchmarks/copy_curriculum.py --algorithms d_rtrl es_d_rtrl bptt tbptt:10 \\
        --hidden 128 --steps 3000
    python benchmarks/copy_curriculum.py --quick
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import time

import jax
import numpy as np
import optax
from flax import nnx

import brainscale as bs  # noqa: E402
from brainscale.models.copy_gru import CopyGRU  # noqa: E402
from brainscale.tasks.binary_copy import (N_CLASSES, N_IN, binary_copy_batch,  # noqa: E402
                                          padded_length)
from brainscale.train.batches import loss_per_label  # noqa: E402
from brainscale.train.compare import learner_options  # noqa: E402
from brainscale.train.plot_labels import algorithm_label as label  # noqa: E402


def run(spec, args, log=print):
    """One curriculum run; its per-step records."""
    name, opts = learner_options(spec, args.decay)
    algorithm = bs.ALGORITHMS[name](**opts)
    model = CopyGRU(args.hidden, rngs=nnx.Rngs(args.seed), n_classes=N_CLASSES, n_in=N_IN)
    learner = bs.online(model, algorithm, optimizer=optax.adam(args.lr))
    xs, _ = binary_copy_batch([args.seed, 0], args.batch_size, 1)
    state = learner.init(jax.random.PRNGKey(args.seed), xs[0])
    L, recent, records, data_steps = 1, collections.deque(maxlen=args.window), [], 0
    t_start = time.perf_counter()
    for step in range(args.steps):
        T = padded_length(L)
        xs, ys = binary_copy_batch([args.seed, step], args.batch_size, L, T)
        state, metrics = learner.train_sequence(state, xs, ys)
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            raise FloatingPointError(f"{spec}: the loss is {loss} at step {step + 1} (L {L})")
        bits = loss_per_label(loss, ys) / math.log(2)
        data_steps += 2 * L + 1
        recent.append(bits)
        trained_on = L
        if len(recent) == args.window and np.mean(recent) < args.threshold:
            L += 1                                   # length L - 1 is learned
            recent.clear()
        records.append({"step": step + 1, "L": trained_on, "learned": L - 1, "bits": bits,
                        "data_steps": data_steps})
        if L > args.max_length:
            break
    wall = time.perf_counter() - t_start
    steps_to = {}
    for r in records:
        steps_to.setdefault(r["learned"], r["step"])
    log(f"{label(spec):10s} L learned {L - 1} after {records[-1]['step']} steps "
        f"({records[-1]['data_steps']} data steps, {wall:.0f} s)")
    return {"algorithm": spec, "learned": L - 1, "records": records,
            "steps_to_learn": steps_to, "wall_s": wall}


def learned_by(records, step):
    """The longest length learned (its threshold met) within ``step`` steps."""
    at = [r["learned"] for r in records if r["step"] <= step]
    return at[-1] if at else 0


def plot(rows, path):
    from brainscale.train.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for r in rows:
        rec = r["records"]
        for ax, key in zip(axes, ("step", "data_steps")):
            ax.plot([x[key] for x in rec], [x["learned"] for x in rec],
                    label=label(r["algorithm"]))
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("data time steps (sum of 2 L + 1)")
    for ax in axes:
        ax.set_ylabel("string length learned")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny GRU, a few dozen steps")
    p.add_argument("--algorithms", nargs="+",
                   help="default d_rtrl es_d_rtrl bptt tbptt:10 (--quick: d_rtrl bptt)")
    p.add_argument("--hidden", type=int, help="GRU units (default 128)")
    p.add_argument("--steps", type=int, help="training steps (default 3000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threshold", type=float,
                   help="bits per recalled bit below which L grows (default 0.15, Mujika et al.)")
    p.add_argument("--window", type=int,
                   help="steps at the current L whose mean loss is compared with the threshold "
                        "(default 20)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--decay", type=float, default=0.9, help="ES-D-RTRL's presynaptic decay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_out/copy_curriculum")
    args = p.parse_args(argv)
    defaults = (dict(hidden=16, steps=40, window=2, threshold=0.99, algorithms=["d_rtrl", "bptt"])
                if args.quick else dict(hidden=128, steps=3000, window=20, threshold=0.15,
                                        algorithms=["d_rtrl", "es_d_rtrl", "bptt", "tbptt:10"]))
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    for spec in args.algorithms:
        try:
            learner_options(spec, args.decay)
        except ValueError as e:
            p.error(f"--algorithms: {e}")
    for key in ("hidden", "steps", "batch_size", "window", "max_length"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be positive")
    return args


def main(argv=None, log=print):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = [run(spec, args, log) for spec in args.algorithms]
    marks = sorted({max(1, args.steps // 4 * i) for i in (1, 2, 3, 4)})
    log("| algorithm | " + " | ".join(f"L learned by step {m}" for m in marks) + " |")
    log("|---|" + "---|" * len(marks))
    for r in rows:
        log(f"| {label(r['algorithm'])} | "
            + " | ".join(str(learned_by(r["records"], m)) for m in marks) + " |")
    with open(os.path.join(args.out, "copy_curriculum.json"), "w") as f:
        json.dump({"args": vars(args), "runs": rows}, f)
    plot(rows, os.path.join(args.out, "copy_curriculum.png"))
    return rows


if __name__ == "__main__":
    main()
