"""Self-backpropagation (SBP): what each part buys, and what it costs.

1. RBM-style classifier on digits (64 -> RBM 100 -> softmax 10), a CD-1
   sleep phase every iteration and a wake phase by schedule: BP every
   iteration; BP every 2nd / 4th / 10th iteration and SBP otherwise; SBP
   only; the output synapses' local gradient alone (SBP with every spread
   off). Per schedule, median over seeds: test accuracy after
   ``--iterations``, the first evaluated iteration at which the accuracy
   reaches ``--target``, and the training cost to get there: iterations x
   the XLA-counted floating-point operations of each phase (sleep + wake);
   the wake phase's mean cost per iteration (the sleep phase costs the same
   in every schedule).
2. The 3-layer SNN of ``brainscale.models.sbp_snn`` (64 -> 200 -> 10): SBP, SBP
   without the backward spread, without the lateral spreads, and the
   two-phase rule on the output synapses alone.

    python benchmarks/sbp.py [--iterations 600] [--snn-iterations 1000]
        [--seeds 3] [--target 0.9] [--out bench_out/sbp]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import sbp_rbm as R  # noqa: E402
from brainscale.models.sbp_snn import OUTPUT, SBPNet, TwoPhase, contrastive, sbp_rules  # noqa: E402
from brainscale.tasks.digits import load_digits_split, rate_encode  # noqa: E402

B = 32
SCHEDULES = [("BP every iteration", "bp", 1, {}),
             ("BP every 2nd, SBP between", "alternate", 2, {}),
             ("BP every 4th, SBP between", "alternate", 4, {}),
             ("BP every 10th, SBP between", "alternate", 10, {}),
             ("SBP only", "sbp", 1, {}),
             ("output gradient only (no spread)", "sbp", 1,
              dict(lam_pre=0.0, lam_post=0.0, lam_bp=0.0))]
SNN_VARIANTS = [("SBP", {}), ("SBP without backward spread", dict(lam_bp=0.0)),
                ("SBP without lateral spreads", dict(lam_pre=0.0, lam_post=0.0)),
                ("two-phase rule on output synapses only (no SBP)", None)]


def rbm_runs(data, iterations, seeds, target, progress, every_eval=25):
    x_tr, x_te = (jnp.asarray(a, jnp.float32) for a in (data[0], data[2]))
    y_tr, y_te = jnp.asarray(data[1]), jnp.asarray(data[3])
    rows = []
    for name, kind, every, opts in SCHEDULES:
        fns = R.phase_fns(sbp_options=opts)
        accs, reach, costs = [], [], []
        for seed in range(seeds):
            i = progress.start(f"RBM, {name}, seed {seed}")
            p = R.init_params(jax.random.PRNGKey(seed), 64, 100, 10)
            fl = R.phase_flops(fns, p, x_tr[:B], y_tr[:B])
            rng = np.random.default_rng(seed)

            def batches():
                while True:
                    idx = rng.choice(len(x_tr), B, replace=False)
                    yield x_tr[idx], y_tr[idx]

            wake, gen, key, spent, hit = R.schedule(kind, iterations, every), batches(), \
                jax.random.PRNGKey(seed + 100), 0.0, None
            for start in range(0, iterations, every_eval):
                key, k = jax.random.split(key)
                p, s = R.train(p, gen, wake[start:start + every_eval], fns, k, flops=fl)
                spent += sum(s.values())
                if hit is None and R.accuracy(p, x_te, y_te) >= target:
                    hit = (start + every_eval, spent)
            accs.append(R.accuracy(p, x_te, y_te))
            reach.append(hit)
            costs.append(spent)
            progress.done(i, f"accuracy {100 * accs[-1]:.1f}%, " + (
                f"{100 * target:g}% at iteration {hit[0]}" if hit else
                f"{100 * target:g}% not reached"))
        hits = [h for h in reach if h is not None]
        rows.append({"schedule": name, "accuracy": statistics.median(accs),
                     "reached": f"{len(hits)}/{seeds}",
                     "iterations_to_target": statistics.median(h[0] for h in hits) if hits
                     else float("nan"),
                     "gflop_to_target": statistics.median(h[1] for h in hits) / 1e9 if hits
                     else float("nan"),
                     "gflop_total": statistics.median(costs) / 1e9,
                     "wake_mflop": statistics.mean(fl[w] for w in wake) / 1e6,
                     "sleep_mflop": fl["sleep"] / 1e6})
    return rows


def snn_accuracy(rules, seed, data, iterations, T=20):
    x_tr, y_tr, x_te, y_te = data
    tp = TwoPhase(SBPNet(64, 200, 10, rngs=nnx.Rngs(seed)), 10, rules=rules)
    state = tp.init(jax.random.PRNGKey(0), jnp.zeros((B, 64)))
    rng = np.random.default_rng(seed)
    for s in range(iterations):
        idx = rng.choice(len(x_tr), B, replace=False)
        xs = rate_encode(x_tr[idx], T, jax.random.PRNGKey(1000 * seed + s + 1))
        state, _ = tp.train(state, xs, jnp.asarray(y_tr[idx]))
    hits, n = 0, (len(x_te) // B) * B
    for i in range(0, n, B):
        r = tp.predict(state, rate_encode(x_te[i:i + B], T, jax.random.PRNGKey(10 ** 6 + i)))
        hits += int(np.sum(np.asarray(r).argmax(-1) == y_te[i:i + B]))
    return hits / n


def snn_runs(data, iterations, seeds, progress):
    rows = []
    for name, opts in SNN_VARIANTS:
        rules = ({OUTPUT: contrastive(0.3, 0.5)} if opts is None
                 else sbp_rules(eta=0.3, **opts))
        accs = []
        for s in range(seeds):
            i = progress.start(f"SNN, {name}, seed {s + 1}")
            accs.append(snn_accuracy(rules, s + 1, data, iterations))
            progress.done(i, f"accuracy {100 * accs[-1]:.1f}%")
        rows.append({"variant": name, "accuracy": statistics.median(accs),
                     "per_seed": " / ".join(f"{100 * a:.1f}" for a in accs)})
    return rows


def _num(v, fmt):
    return "-" if v != v else format(v, fmt)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--snn-iterations", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--target", type=float, default=0.9)
    p.add_argument("--out", default=os.path.join("bench_out", "sbp"))
    args = p.parse_args(argv)
    data = load_digits_split()
    progress = common.Progress((len(SCHEDULES) + len(SNN_VARIANTS)) * args.seeds)
    rbm = rbm_runs(data, args.iterations, args.seeds, args.target, progress)
    snn = snn_runs(data, args.snn_iterations, args.seeds, progress)
    os.makedirs(args.out, exist_ok=True)
    common.write_csv(os.path.join(args.out, "sbp_rbm.csv"), rbm, list(rbm[0]))
    common.write_csv(os.path.join(args.out, "sbp_snn.csv"), snn, list(snn[0]))
    t1 = common.md_table(
        ["wake phase schedule", "test accuracy", f"reached {100 * args.target:g}%",
         "iterations to it", "GFLOP to it", "GFLOP in all", "wake MFLOP / iteration"],
        [[r["schedule"], f"{100 * r['accuracy']:.1f}%", r["reached"],
          _num(r["iterations_to_target"], ".0f"), _num(r["gflop_to_target"], ".2f"),
          f"{r['gflop_total']:.2f}", f"{r['wake_mflop']:.2f}"] for r in rbm])
    t2 = common.md_table(["3-layer SNN", "test accuracy (median)", "per seed"],
                         [[r["variant"], f"{100 * r['accuracy']:.1f}%", r["per_seed"]]
                          for r in snn])
    info = common.device_info()
    lines = common.header_lines("SBP on digits", info,
                                common.command_line("benchmarks/sbp.py", argv))
    with open(os.path.join(args.out, "sbp.md"), "w") as f:
        f.write("\n".join(lines) + "\n\n" + t1 + "\n\n" + t2 + "\n")
    print(t1 + "\n\n" + t2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
