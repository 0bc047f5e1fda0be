"""Gradient fidelity of D-RTRL and ES-D-RTRL against BPTT across spiking
dynamics (the BrainScale paper's Fig. 4a-d).

Every model is a 2-layer recurrent spiking network followed by a leaky
readout, built from the model library with per-sample shapes::

    x (n_in) -> l1: recurrent layer (n_rec) -> l2: recurrent layer (n_rec)
             -> out: LeakyReadout(n_rec, n_out)

Input is Bernoulli(p) spikes, the loss is cross-entropy at every step against
one random label per sample. For each model and seed the three learners
compute ``sequence_grad`` on the same initial parameters and data; we report
the cosine similarity and the norm ratio (online / BPTT) of the gradient,
overall and per parameter group (``l1``, ``l2``, ``out``), and beside them the
fraction of neuron-steps that spike in each layer (a silent layer makes the
comparison meaningless; rates below 1 % are flagged).

    python benchmarks/fidelity.py --quick
    python benchmarks/fidelity.py                      # the paper-sized probe
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, NamedTuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import brainscale as bs  # noqa: E402
import common  # noqa: E402
from brainscale.nn.neurons import ALIF, GIF, LIF, Izhikevich  # noqa: E402
from brainscale.nn.projections import Recurrent  # noqa: E402
from brainscale.nn.readout import LeakyReadout, LinearReadout  # noqa: E402
from brainscale.nn.synapses import STD, STP, DualExpon, Expon  # noqa: E402
from fidelity_layers import PreSynRecurrent, Resonator  # noqa: E402
from fidelity_report import FIELDS, GROUPS, plot, write_markdown  # noqa: E402

ALGORITHMS = ("bptt", "d_rtrl", "es_d_rtrl", "es_adaptive")     # the default; BPTT first


# -- models --------------------------------------------------------------------

class TwoLayerNet(nnx.Module):
    """l1 -> l2 -> leaky readout; ``make_layer(n_in, n_rec, w_in, w_rec, rngs)``.
    ``tau_out <= 0`` gives a memoryless readout ``s2 @ W``."""

    def __init__(self, make_layer, n_in, n_rec, n_out, scales, *, rngs, tau_out=10.0):
        self.l1 = make_layer(n_in, n_rec, scales[0], scales[1], rngs)
        self.l2 = make_layer(n_rec, n_rec, scales[2], scales[3], rngs)
        self.out = (LeakyReadout(n_rec, n_out, tau=tau_out, rngs=rngs) if tau_out > 0
                    else LinearReadout(n_rec, n_out, rngs=rngs, use_bias=False))

    def __call__(self, x):
        return self.out(self.l2(self.l1(x)))


class Spec(NamedTuple):
    label: str
    make_layer: Callable      # (n_in, n_rec, w_in_scale, w_rec_scale, rngs) -> layer
    scales: tuple             # (l1 input, l1 recurrent, l2 input, l2 recurrent)
    note: str


def _recurrent(neuron, syn=None):
    def make(n_in, n, w_in, w_rec, rngs):
        return Recurrent(n_in, n, neuron(n), rngs=rngs, syn=None if syn is None else syn(n),
                         w_in_scale=w_in, w_rec_scale=w_rec)
    return make


def _presyn(neuron, syn):
    def make(n_in, n, w_in, w_rec, rngs):
        return PreSynRecurrent(n_in, n, neuron(n), syn(n_in), rngs=rngs,
                               w_in_scale=w_in, w_rec_scale=w_rec)
    return make


def _lif(n):
    return LIF(n, tau=20.0)


# Weight scales were tuned (Bernoulli(0.1) input, T 100 and 1000) so that
# both layers fire at a moderate rate; the rates are measured on every run.
MODELS = {
    "lif": Spec("LIF", _recurrent(_lif), (40.0, 8.0, 30.0, 6.0),
                "LIF tau 20, soft reset, delta synapse"),
    "alif": Spec("ALIF", _recurrent(lambda n: ALIF(n, tau=20.0, tau_a=200.0, beta=0.1)),
                 (50.0, 8.0, 40.0, 8.0), "ALIF tau 20, tau_a 200, beta 0.1"),
    "lif_expon": Spec("LIF+Expon", _recurrent(_lif, lambda n: Expon(n, tau=5.0)),
                      (10.0, 2.0, 6.0, 1.5), "AlignPost exponential synapse tau 5"),
    "lif_dualexpon": Spec("LIF+DualExpon",
                          _recurrent(_lif, lambda n: DualExpon(n, tau_rise=1.0, tau_decay=10.0)),
                          (5.0, 1.0, 3.0, 0.8), "AlignPost dual exponential, rise 1, decay 10"),
    "lif_std": Spec("LIF+STD", _presyn(_lif, lambda n: STD(n, tau_d=50.0, U=0.4)),
                    (300.0, 8.0, 250.0, 8.0), "AlignPre STD on input spikes, tau_d 50, U 0.4"),
    "lif_stp": Spec("LIF+STP", _presyn(_lif, lambda n: STP(n, U=0.2, tau_f=100.0, tau_d=50.0)),
                    (250.0, 8.0, 200.0, 8.0),
                    "AlignPre STP on input spikes, U 0.2, tau_f 100, tau_d 50"),
    "gif": Spec("GIF", _recurrent(lambda n: GIF(n)), (50.0, 8.0, 40.0, 8.0),
                "GIF (Mihalas-Niebur) defaults"),
    "resonator": Spec("Resonator", _recurrent(lambda n: Resonator(n)), (2.0, 1.0, 2.0, 1.0),
                      "resonate-and-fire (exact damped rotation of two states), b -0.05, dt 0.5, omega 0.5-1.5"),
    "resonator_ff": Spec("Resonator ff", _recurrent(lambda n: Resonator(n)), (2.0, 0.0, 2.0, 0.0),
                         "the same, recurrent weights zero (feed-forward layers)"),
    "izhikevich": Spec("Izhikevich", _recurrent(lambda n: Izhikevich(n)), (45.0, 5.0, 45.0, 5.0),
                       "Izhikevich regular spiking, dt 1 ms"),
}


def build_net(name, args, seed) -> TwoLayerNet:
    spec = MODELS[name]
    return TwoLayerNet(spec.make_layer, args.n_in, args.n_rec, args.n_out, spec.scales,
                       rngs=nnx.Rngs(seed), tau_out=args.tau_out)


def params_of(net):
    """The per-sample parameter pytree the learners train ({'l1', 'l2', 'out'})."""
    return jax.tree.map(jnp.asarray, bs.from_nnx(net).init(None, None)[0])


def firing_rates(model, params, hidden, xs) -> dict:
    """Fraction of neuron-steps that spike in each layer (from the ``spk``
    hidden state of each layer) over the whole sequence (jittable)."""
    def body(h, x):
        h, _ = jax.vmap(lambda hh, xx: model.apply(params, hh, xx))(h, x)
        return h, {k: jnp.mean(h[k]["spk"]) for k in GROUPS if "spk" in h.get(k, {})}
    _, r = jax.lax.scan(body, hidden, xs)
    return {k: jnp.mean(v) for k, v in r.items()}


def measure_model(name, args, progress=None) -> list[dict]:
    """Rows (one per seed and algorithm) for one model; a line per seed on
    ``progress`` (a ``common.Progress``) when given."""
    learners, states = {}, {}
    rates_fn = None
    rows = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        i = progress.start(f"{name} seed {seed}") if progress else None
        net = build_net(name, args, seed)
        xs, ys = common.bernoulli_inputs(1000 + seed, args.T, args.batch, args.n_in,
                                         args.p_in, args.n_out)
        xs, ys = jnp.asarray(xs), jnp.asarray(ys)
        if not learners:  # one learner per algorithm, compiled once per model
            for alg in args.algorithms:
                learners[alg] = bs.online(net, common.algorithm(alg, args.decay))
                states[alg] = learners[alg].init(jax.random.PRNGKey(0), xs[0])
            model = learners["bptt"].model
            rates_fn = jax.jit(lambda p, h, x: firing_rates(model, p, h, x))
        params = params_of(net)
        grads, losses = {}, {}
        for alg in args.algorithms:
            state = states[alg]._replace(params=params)
            g, ls = learners[alg].sequence_grad(state, xs, ys)
            grads[alg], losses[alg] = jax.device_get(g), float(jnp.mean(ls))
        rates = {k: float(v) for k, v in rates_fn(params, states["bptt"].hidden, xs).items()}
        ms = {alg: step_ms(learners[alg], states[alg]._replace(params=params), xs, ys,
                           args.time_reps) for alg in args.algorithms}
        ref = grads["bptt"]
        for alg in args.algorithms:
            g = grads[alg]
            row = {"model": name, "label": MODELS[name].label, "seed": seed, "algorithm": alg,
                   "cos_all": common.cosine(g, ref), "ratio_all": common.ratio(g, ref),
                   "norm_all": common.norm(g), "norm_bptt": common.norm(ref),
                   "loss": losses[alg], "ms_step": ms[alg],
                   "loss_diff_vs_bptt": abs(losses[alg] - losses["bptt"])}
            for k in GROUPS:
                row[f"cos_{k}"] = common.cosine(g[k], ref[k])
                row[f"ratio_{k}"] = common.ratio(g[k], ref[k])
                row[f"norm_{k}"] = common.norm(g[k])
            row.update({f"rate_{k}": rates.get(k, float("nan")) for k in ("l1", "l2")})
            row.update({"T": args.T, "B": args.batch, "n_in": args.n_in, "n_rec": args.n_rec,
                        "n_out": args.n_out, "p_in": args.p_in, "decay": args.decay,
                        "seconds": time.perf_counter() - t0})
            rows.append(row)
        by = {r["algorithm"]: r for r in rows[-len(args.algorithms):]}
        if progress:
            progress.done(i, ", ".join(f"cos {a} {by[a]['cos_all']:.3f}"
                                       for a in args.algorithms[1:])
                          + f"; rates l1 {rates.get('l1', 0):.3f} "
                          f"l2 {rates.get('l2', 0):.3f}")
    return rows


def step_ms(learner, state, xs, ys, reps) -> float:
    """Median milliseconds per time step of ``sequence_grad`` over ``reps``
    calls (compiled already)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(learner.sequence_grad(state, xs, ys))
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times)) / xs.shape[0]


# -- command line ----------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Gradient fidelity (cosine, norm ratio) of D-RTRL and ES-D-RTRL vs BPTT "
                    "on 2-layer recurrent spiking networks with different dynamics.")
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated subset of {','.join(MODELS)}")
    ap.add_argument("--n-in", type=int, default=100)
    ap.add_argument("--n-rec", type=int, default=None, help="recurrent size (default 200)")
    ap.add_argument("--n-out", type=int, default=10)
    ap.add_argument("-T", "--T", type=int, default=None, help="steps (default 1000)")
    ap.add_argument("-B", "--batch", type=int, default=None, help="batch (default 16)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    ap.add_argument("--p-in", type=float, default=0.1, help="input spike probability")
    ap.add_argument("--tau-out", type=float, default=10.0,
                    help="readout time constant (<= 0: memoryless readout s2 @ W)")
    ap.add_argument("--decay", type=float, default=0.9, help="ES-D-RTRL decay alpha")
    ap.add_argument("--quick", action="store_true",
                    help="n_rec 64, T 100, B 8, 3 seeds (explicit flags win)")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS[1:]),
                    help="comma-separated online learners compared with BPTT: d_rtrl, "
                         "es_d_rtrl, es_adaptive, e_prop, low_rank_d_rtrl:R, ...")
    ap.add_argument("--time-reps", type=int, default=None,
                    help="timed calls per seed and algorithm (default 3; quick 1)")
    ap.add_argument("--out", default="bench_out/fidelity", help="output folder")
    args = ap.parse_args(argv)
    quick = dict(n_rec=64, T=100, batch=8, seeds=3, time_reps=1)
    full = dict(n_rec=200, T=1000, batch=16, seeds=3, time_reps=3)
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.models = model_list(ap, args.models)
    args.algorithms = algorithm_list(ap, args.algorithms)
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    if args.time_reps < 1:
        ap.error("--time-reps must be at least 1")
    args.seeds = tuple(range(args.seeds))
    return args


def model_list(ap, text: str) -> list[str]:
    """The comma-separated model names of ``text``, each one of MODELS (else
    the parser's error)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        ap.error(f"unknown models {unknown}; choose from {','.join(MODELS)}")
    return names


def algorithm_list(ap, text: str) -> tuple[str, ...]:
    """("bptt", the comma-separated learners of ``text``), each checked (else
    the parser's error naming it)."""
    names = [a.strip() for a in text.split(",") if a.strip() and a.strip() != "bptt"]
    for a in names:
        try:
            common.algorithm(a, 0.9)
        except (ValueError, KeyError, TypeError) as e:
            ap.error(f"--algorithms: {a!r}: {e}")
    if not names:
        ap.error("--algorithms: name at least one online learner")
    return ("bptt",) + tuple(dict.fromkeys(names))


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    info, cmd = common.device_info(), common.command_line(__file__, argv)
    print(f"fidelity: {len(args.models)} models x {len(args.seeds)} seeds, n_rec {args.n_rec}, "
          f"T {args.T}, B {args.batch} on {info['device']} (jax {info['jax']})", flush=True)
    t0 = time.perf_counter()
    rows = []
    progress = common.Progress(len(args.models) * len(args.seeds))
    for name in args.models:
        rows += measure_model(name, args, progress)
    seconds = time.perf_counter() - t0
    common.write_csv(os.path.join(args.out, "fidelity.csv"), rows, FIELDS)
    table = write_markdown(os.path.join(args.out, "fidelity.md"), rows, args, info, cmd, seconds,
                           MODELS)
    plot(os.path.join(args.out, "fidelity.png"), rows, {k: s.label for k, s in MODELS.items()})
    print(table)
    print(f"wrote {args.out}/fidelity.csv, fidelity.md, fidelity.png in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
