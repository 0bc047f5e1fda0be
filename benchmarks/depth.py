"""Per-layer gradient fidelity of the online learners in deep spiking
networks: how much of each layer's BPTT gradient (cosine, norm ratio) the
traces recover, with and without ES-D-RTRL's paths through the layers above
(``bs.es_d_rtrl(through_layers=True)``).

The network stacks ``--layers`` recurrent layers of one of
``benchmarks/fidelity.py``'s dynamics (its weight scales: the first layer's
for layer 1, the second's above) under a leaky readout; Bernoulli input,
cross-entropy at every step against one random label per sample.

    python benchmarks/depth.py --quick
    python benchmarks/depth.py --layers 3 --models lif,alif,lif_expon
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import brainscale as bs  # noqa: E402
import common  # noqa: E402
import fidelity  # noqa: E402
from brainscale.nn.readout import LeakyReadout, LinearReadout  # noqa: E402

ALGORITHMS = ("bptt", "d_rtrl", "es_d_rtrl", "es_layers")


class DeepNet(nnx.Module):
    """``layers`` recurrent layers ``l1 .. lN`` of one dynamics, then a readout."""

    def __init__(self, spec, n_in, n_rec, n_out, layers, *, rngs, tau_out=10.0):
        self.names = [f"l{i + 1}" for i in range(layers)]
        for i, name in enumerate(self.names):
            w_in, w_rec = spec.scales[:2] if i == 0 else spec.scales[2:]
            setattr(self, name, spec.make_layer(n_in if i == 0 else n_rec, n_rec, w_in, w_rec,
                                                rngs))
        self.out = (LeakyReadout(n_rec, n_out, tau=tau_out, rngs=rngs) if tau_out > 0
                    else LinearReadout(n_rec, n_out, rngs=rngs, use_bias=False))

    def __call__(self, x):
        for name in self.names:
            x = getattr(self, name)(x)
        return self.out(x)


def measure(name, args, progress=None) -> list[dict]:
    """Rows (per seed and algorithm): cosine and norm ratio to BPTT per layer."""
    spec = fidelity.MODELS[name]
    groups = [f"l{i + 1}" for i in range(args.layers)] + ["out"]
    rows = []
    for seed in args.seeds:
        i = progress.start(f"{name} seed {seed}") if progress else None
        net = DeepNet(spec, args.n_in, args.n_rec, args.n_out, args.layers,
                      rngs=nnx.Rngs(seed), tau_out=args.tau_out)
        xs, ys = common.bernoulli_inputs(1000 + seed, args.T, args.batch, args.n_in,
                                         args.p_in, args.n_out)
        xs, ys = jnp.asarray(xs), jnp.asarray(ys)
        params = fidelity.params_of(net)
        grads = {}
        for alg in ALGORITHMS:
            learner = bs.online(net, common.algorithm(alg, args.decay))
            state = learner.init(jax.random.PRNGKey(0), xs[0])._replace(params=params)
            grads[alg] = jax.device_get(learner.sequence_grad(state, xs, ys)[0])
        ref = grads["bptt"]
        for alg in ALGORITHMS[1:]:
            row = {"model": name, "label": spec.label, "seed": seed, "algorithm": alg}
            for k in groups:
                row[f"cos_{k}"] = common.cosine(grads[alg][k], ref[k])
                row[f"ratio_{k}"] = common.ratio(grads[alg][k], ref[k])
            rows.append(row)
        if progress:
            last = {r["algorithm"]: r for r in rows[-3:]}
            progress.done(i, ", ".join(f"{a} l1 {last[a]['cos_l1']:.3f}/{last[a]['ratio_l1']:.2f}"
                                       for a in ALGORITHMS[1:]))
    return rows


def table(rows, layers) -> str:
    groups = [f"l{i + 1}" for i in range(layers)] + ["out"]
    head = ["model", "algorithm"] + [f"{k} cos / ratio" for k in groups]
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        for alg in ALGORITHMS[1:]:
            sel = [r for r in rows if r["model"] == name and r["algorithm"] == alg]
            out.append([sel[0]["label"], alg] + [
                f"{np.nanmean([r[f'cos_{k}'] for r in sel]):.3f} / "
                f"{np.nanmean([r[f'ratio_{k}'] for r in sel]):.2f}" for k in groups])
    return common.md_table(head, out)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lif,alif,lif_expon,gif")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--n-in", type=int, default=100)
    ap.add_argument("--n-rec", type=int, default=100)
    ap.add_argument("--n-out", type=int, default=10)
    ap.add_argument("-T", "--T", type=int, default=300)
    ap.add_argument("-B", "--batch", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--p-in", type=float, default=0.1)
    ap.add_argument("--tau-out", type=float, default=10.0,
                    help="readout time constant (<= 0: memoryless readout)")
    ap.add_argument("--decay", type=float, default=0.9)
    ap.add_argument("--quick", action="store_true", help="tiny: 2 layers of 16, T 20, 1 seed")
    ap.add_argument("--out", default="bench_out/depth")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.layers, args.n_rec, args.T, args.batch, args.seeds = (
            "lif", 2, 16, 20, 2, 1)
    args.models = fidelity.model_list(ap, args.models)
    if args.layers < 1 or args.seeds < 1:
        ap.error("--layers and --seeds must be at least 1")
    args.seeds = tuple(range(args.seeds))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    info, cmd = common.device_info(), common.command_line(__file__, argv)
    t0 = time.perf_counter()
    progress = common.Progress(len(args.models) * len(args.seeds))
    rows = [r for name in args.models for r in measure(name, args, progress)]
    md = table(rows, args.layers)
    lines = common.header_lines("Per-layer fidelity in deep spiking networks", info, cmd) + [
        f"- {args.layers} recurrent layers of {args.n_rec}, {args.n_in} Bernoulli({args.p_in}) "
        f"inputs, readout tau {args.tau_out}; T {args.T}, B {args.batch}, seeds "
        f"{list(args.seeds)}; ES-D-RTRL decay {args.decay}; mean over seeds",
        f"- total time {time.perf_counter() - t0:.1f} s", "", md, ""]
    with open(os.path.join(args.out, "depth.md"), "w") as f:
        f.write("\n".join(lines))
    common.write_csv(os.path.join(args.out, "depth.csv"), rows)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
