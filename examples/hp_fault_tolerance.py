"""Hybrid plasticity, fault tolerance: digits with growing cropped regions
and growing input noise (Wu et al. 2022, Fig. 4), on sklearn's 8x8 digits
or on real MNIST (``--dataset mnist``: the fixed 4,000 / 1,000 split).

GP only, LP only and HP (theta meta-learned by the bilevel step) are
trained on complete, rate-coded digits from the same initial weights
(``examples/hp_network.py``); then each is tested on

- crops: a k x k square at a random position set to 0 (k = 0..5 pixels of 8;
  on 28 x 28 MNIST the same fractions of the side: 0, 4, 7, 10, 14, 18);
- noise: each pixel replaced, with probability p, by a uniform intensity;

reporting accuracy, and the distance between the hidden-layer rates of the
incomplete and of the complete pattern (Euclidean, and cosine similarity).
Also: the response latency of rate and rank-order coding (the first step
after which the running readout's decision no longer changes), per variant.
Writes ``--out/fault_tolerance.json`` and ``fault_tolerance.png``.

    python examples/hp_fault_tolerance.py [--quick] [--steps 300] [--first-order]
        [--dataset digits] [--only gp lp hp] [--out hp_out]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hp_network as N  # noqa: E402  (examples/hp_network.py)

CROPS = [0, 1, 2, 3, 4, 5]
NOISE = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
VARIANTS = ["gp", "lp", "hp"]


def crop(x, k, rng):
    """Each square image with a k x k square at a random position set to 0."""
    side = int(round(np.sqrt(x.shape[1])))
    out = np.array(x, copy=True).reshape(-1, side, side)
    if k:
        for img in out:
            r, c = rng.integers(0, side + 1 - k, 2)
            img[r:r + k, c:c + k] = 0.0
    return out.reshape(len(x), -1)


def noisy(x, p, rng):
    """Each pixel replaced by a uniform intensity with probability p."""
    hit = rng.random(x.shape) < p
    return np.where(hit, rng.random(x.shape), x).astype(np.float32)


def hidden_distance(r_bad, r_good):
    """Mean Euclidean distance and mean cosine similarity, per sample."""
    d = np.linalg.norm(r_bad - r_good, axis=1)
    cos = np.sum(r_bad * r_good, 1) / np.maximum(
        np.linalg.norm(r_bad, axis=1) * np.linalg.norm(r_good, axis=1), 1e-12)
    return float(d.mean()), float(cos.mean())


def response_latency(learner, state, x, y, T, coding):
    """Mean over correctly classified samples of the first step from which
    the argmax of the running readout sum (from step 0) stays the final
    answer; and the accuracy."""
    outs = np.concatenate([np.asarray(learner.predict(state, xs))[:, :n]
                           for xs, n in N.encoded_batches(x, T, coding)], axis=1)
    running = np.cumsum(outs, 0).argmax(-1)                  # (T, N)
    final = running[-1]
    settled = np.array([T - np.argmax((running[::-1, i] != final[i])) if np.any(
        running[:, i] != final[i]) else 0 for i in range(running.shape[1])])
    ok = final == np.asarray(y)
    return float(settled[ok].mean()) if ok.any() else float("nan"), float(ok.mean())


def main(argv=None, log=print):
    from brainscale.tasks.digits import load_digits_split
    from brainscale.tasks.mnist import load_mnist_split

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few steps, a test subset")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--T", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-order", action="store_true",
                   help="HP: the first-order meta-gradient instead of the bilevel one")
    p.add_argument("--only", nargs="*", choices=VARIANTS)
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    p.add_argument("--out", default="hp_out")
    args = p.parse_args(argv)
    steps, n_test = (30, 96) if args.quick else (args.steps, None)
    x_tr, y_tr, x_te, y_te = (load_mnist_split() if args.dataset == "mnist"
                              else load_digits_split())
    x_te, y_te = x_te[:n_test], y_te[:n_test]
    side = int(round(np.sqrt(x_tr.shape[1])))
    crop_sides = [int(round(k * side / 8)) for k in CROPS]
    rng = np.random.default_rng(args.seed)
    crops = {k: crop(x_te, k, rng) for k in crop_sides}
    noises = {q: noisy(x_te, q, rng) for q in NOISE}
    res = {"dataset": args.dataset, "steps": steps, "T": args.T, "n_test": len(x_te),
           "first_order": args.first_order, "variants": {}}
    for v in args.only or VARIANTS:
        row = {}
        for coding in ("rate", "rank"):
            learner, state = N.train(v, x_tr, y_tr, steps=steps, T=args.T, coding=coding,
                                     seed=args.seed, first_order=args.first_order)
            lat, acc = response_latency(learner, state, x_te, y_te, args.T, coding)
            row[coding] = {"accuracy": acc, "latency_steps": lat}
            if coding == "rate":
                kept = (learner, state)
        learner, state = kept
        clean = N.hidden_rates(v, state, x_te, T=args.T)
        row["crop"], row["noise"] = [], []
        for key, sets, levels in (("crop", crops, crop_sides), ("noise", noises, NOISE)):
            for lv in levels:
                acc = N.accuracy(learner, state, sets[lv], y_te, T=args.T)
                dist, cos = hidden_distance(N.hidden_rates(v, state, sets[lv], T=args.T),
                                            clean)
                row[key].append({"level": lv, "accuracy": acc, "hidden_distance": dist,
                                 "hidden_cosine": cos})
        res["variants"][v] = row
        log(f"{v}: rate {100 * row['rate']['accuracy']:.1f}% (latency "
            f"{row['rate']['latency_steps']:.1f} steps), rank {100 * row['rank']['accuracy']:.1f}% "
            f"(latency {row['rank']['latency_steps']:.1f}); crop "
            + " ".join(f"{100 * r['accuracy']:.0f}" for r in row["crop"]) + "; noise "
            + " ".join(f"{100 * r['accuracy']:.0f}" for r in row["noise"]))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "fault_tolerance.json"), "w") as f:
        json.dump(res, f, indent=1)
    plot(res, os.path.join(args.out, "fault_tolerance.png"))
    return res


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.6))
    for v, row in res["variants"].items():
        for j, key in enumerate(("crop", "noise")):
            lv = [r["level"] for r in row[key]]
            ax[j].plot(lv, [100 * r["accuracy"] for r in row[key]], "o-", label=v.upper())
            ax[2 + j].plot(lv, [r["hidden_distance"] for r in row[key]], "o-", label=v.upper())
    for a, title, xl in zip(ax, ("accuracy, cropped", "accuracy, noisy",
                                 "hidden distance, cropped", "hidden distance, noisy"),
                            ("crop side (pixels)", "noise probability") * 2):
        a.set_title(title)
        a.set_xlabel(xl)
        a.legend()
    ax[0].set_ylabel("test accuracy (%)")
    ax[2].set_ylabel("|r(incomplete) - r(complete)|")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
