"""Which brainpy.state classes compile through BrainScale, unmodified.

Each neuron class ``C`` is built with its defaults into
``input -> brainstate.nn.Linear -> C -> Linear readout`` (the input current
in the unit of ``C.update``'s default argument); each synapse class into an
``AlignPostProj`` (AlignPost kinetics) or in front of the weights (STD/STP
and other presynaptic kinetics). For every model: BPTT through BrainScale
vs brainstate's own ``transform.grad`` of the batched model (relative max
error, float64), D-RTRL vs BPTT, or the error the compiler gives.

    python benchmarks/brainpy_coverage.py [--out docs/brainpy_coverage.md]
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import traceback

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import braintools  # noqa: E402
import brainstate  # noqa: E402
import brainunit as u  # noqa: E402
import brainpy.state as bp  # noqa: E402

import brainscale as bs  # noqa: E402
from brainscale.brainstate_model import from_brainstate  # noqa: E402

N_IN, N, N_OUT, T, B = 4, 6, 2, 30, 3
DT = 0.1 * u.ms
NEURONS = ["IF", "LIF", "LIFRef", "ExpIF", "ExpIFRef", "AdExIF", "AdExIFRef", "ALIF", "QuaIF",
           "AdQuaIF", "AdQuaIFRef", "Gif", "GifRef", "CubaLIF", "CobaLIF", "Izhikevich",
           "IzhikevichRef", "HH", "WangBuzsakiHH", "MorrisLecar", "FitzHughNagumo",
           "HindmarshRose"]
POST_SYNAPSES = ["Expon", "DualExpon"]
PRE_SYNAPSES = ["STD", "STP", "Alpha", "AMPA", "GABAa", "BioNMDA"]


def _linear(n_in, n_out, unit=u.UNITLESS):
    return brainstate.nn.Linear(n_in, n_out,
                                w_init=braintools.init.KaimingNormal(scale=4.0, unit=unit),
                                b_init=braintools.init.Constant(0.5 * unit))


def _input_unit(cls):
    default = inspect.signature(cls.update).parameters.get("x")
    value = None if default is None else default.default
    return u.get_unit(value) if isinstance(value, u.Quantity) else u.UNITLESS


class NeuronNet(brainstate.nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.fc = _linear(N_IN, N)
        self.neuron = cls(N)
        self.unit = _input_unit(cls)
        self.readout = _linear(N, N_OUT)

    def update(self, x):
        return self.readout(self.neuron(self.fc(x) * self.unit))


class PostNet(brainstate.nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.lif = bp.LIF(N, tau=5. * u.ms, V_th=1. * u.mV)
        self.proj = bp.AlignPostProj(comm=_linear(N_IN, N, u.mS), syn=cls.desc(N),
                                     out=bp.CUBA.desc(), post=self.lif)
        self.readout = _linear(N, N_OUT)

    def update(self, x):
        self.proj(x)
        return self.readout(self.lif())


class ReadoutNet(brainstate.nn.Module):
    """LIF read out by brainpy's leaky integrator (LeakyRateReadout)."""

    def __init__(self, cls):
        super().__init__()
        self.fc = _linear(N_IN, N)
        self.lif = bp.LIF(N, tau=5. * u.ms, V_th=1. * u.mV)
        self.readout = cls(N, N_OUT, tau=5. * u.ms)

    def update(self, x):
        return self.readout(self.lif(self.fc(x) * u.mA))


class ProjNet(brainstate.nn.Module):
    """Input spikes through a projection class onto LIF (DeltaProj: a jump of
    V; CurrentProj: a current), or a recurrent AlignPostProj from the
    population's own spikes (name "recurrent"), or one with an axonal delay."""

    def __init__(self, cls, how):
        super().__init__()
        self.how = how
        self.lif = bp.LIF(N, tau=5. * u.ms, V_th=1. * u.mV)
        if how == "DeltaProj":
            self.proj = bp.DeltaProj(comm=_linear(N_IN, N, u.mV), post=self.lif)
        elif how == "CurrentProj":
            self.proj = bp.CurrentProj(comm=_linear(N_IN, N, u.mS), out=bp.CUBA(),
                                       post=self.lif)
        else:
            self.proj = bp.AlignPostProj(comm=_linear(N_IN, N, u.mS),
                                         syn=bp.Expon.desc(N, tau=5. * u.ms),
                                         out=bp.CUBA.desc(), post=self.lif,
                                         delay=1. * u.ms if how == "delay" else None)
        if how == "recurrent":
            self.rec = bp.AlignPostProj(comm=_linear(N, N, u.mS),
                                        syn=bp.Expon.desc(N, tau=5. * u.ms),
                                        out=bp.CUBA.desc(), post=self.lif)
        self.readout = _linear(N, N_OUT)

    def update(self, x):
        if self.how == "recurrent":
            self.rec(self.lif.get_spike())
        self.proj(x)
        return self.readout(self.lif())


class PreNet(brainstate.nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.syn = cls(N_IN)
        self.x_unit = u.mS if cls is bp.Alpha else None   # Alpha integrates a conductance
        self.fc = _linear(N_IN, N)
        self.lif = bp.LIF(N, tau=5. * u.ms, V_th=1. * u.mV)
        self.readout = _linear(N, N_OUT)

    def update(self, x):
        g = self.syn(x if self.x_unit is None else x * self.x_unit)
        return self.readout(self.lif(self.fc(u.get_mantissa(g)) * u.mA))


def _rel(a, b):
    return max(float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-300))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _reference(net, xs, ys):
    brainstate.nn.init_all_states(net, batch_size=B)
    params = net.states(brainstate.ParamState)
    ce = jax.vmap(bs.losses.cross_entropy)

    def loss():
        def body(i, x, y):
            with brainstate.environ.context(t=i * DT):    # refractory models read t
                return ce(u.get_mantissa(net(x)), y)
        with brainstate.environ.context(dt=DT):
            return brainstate.transform.for_loop(body, jnp.arange(T), xs, ys).mean()

    out = {}
    for path, g in brainstate.transform.grad(loss, params)().items():
        d = out
        for k in path[:-1]:
            d = d.setdefault(str(k), {})
        d[str(path[-1])] = jax.tree.map(u.get_mantissa, g,
                                        is_leaf=lambda a: isinstance(a, u.Quantity))
    return out


def check(kind, name, make, one_layer=True):
    """One row: (kind, class, status, BPTT err, D-RTRL err, note). BPTT must
    equal brainstate's gradient; D-RTRL must equal BPTT on one layer."""
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.4, (T, B, N_IN)).astype(jnp.float64)
    ys = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, N_OUT)
    brainstate.random.seed(0)
    try:
        with brainstate.environ.context(dt=DT):    # some classes read dt when built
            net = make(getattr(bp, name.split(" ")[0], None))
        step = from_brainstate(net, dt=DT)
        grads = {}
        for alg in ("bptt", "d_rtrl"):
            learner = bs.online(step, alg)
            grads[alg], _ = learner.sequence_grad(learner.init(jax.random.PRNGKey(0), xs[0]),
                                                  xs, ys)
        ref = _reference(net, xs, ys)
        e_bptt, e_d = _rel(grads["bptt"], ref), _rel(grads["d_rtrl"], grads["bptt"])
        ok = e_bptt < 1e-8 and (e_d < 1e-8 or not one_layer)
        k = "; ".join(f"{'+'.join(g.paths).replace('hidden', '')}" for g in learner.graph.groups)
        return kind, name, "compiles" if ok else "MISMATCH", f"{e_bptt:.1e}", f"{e_d:.1e}", k
    except Exception as e:                        # the row records the error instead
        msg = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        if os.environ.get("BRAINSCALE_DEBUG"):
            traceback.print_exc()
        return kind, name, "error", "", "", f"{type(e).__name__}: {msg[:240]}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join("docs", "brainpy_coverage.md"))
    p.add_argument("--only", nargs="*", help="class names to check")
    args = p.parse_args(argv)
    jobs = ([("neuron", n, NeuronNet) for n in NEURONS]
            + [("AlignPost synapse", n, PostNet) for n in POST_SYNAPSES]
            + [("presynaptic", n, PreNet) for n in PRE_SYNAPSES]
            + [("readout", "LeakyRateReadout", ReadoutNet)]
            + [("projection", n, lambda cls, n=n: ProjNet(cls, n))
               for n in ("DeltaProj", "CurrentProj")]
            + [("projection", "AlignPostProj (delay 1 ms)",
                lambda cls: ProjNet(cls, "delay"))]
            + [("recurrent", "AlignPostProj (recurrent)", lambda cls: ProjNet(cls, "recurrent"),
                False)])
    if args.only:
        jobs = [j for j in jobs if j[1].split(" ")[0] in args.only or j[1] in args.only]
    with brainstate.environ.context(precision=64):
        rows = [check(*j) for j in jobs]
    head = ("| kind | class | result | BPTT vs brainstate.grad | D-RTRL vs BPTT | "
            "hidden groups / error |\n|---|---|---|---|---|---|\n")
    # D-RTRL is exact on one layer; on the recurrent row its error is the
    # diagonal approximation's
    table = head + "".join("| " + " | ".join(r) + " |\n" for r in rows)
    print(table)
    n_ok = sum(r[2] == "compiles" for r in rows)
    print(f"{n_ok} of {len(rows)} models compile with exact BPTT gradients")
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write("# brainpy.state classes through BrainScale\n\n"
                    "Written by `python benchmarks/brainpy_coverage.py` (float64, "
                    f"T={T}, B={B}, dt={DT}). Relative max errors.\n\n" + table
                    + f"\n{n_ok} of {len(rows)} models compile with exact BPTT gradients "
                    "(and D-RTRL equal to BPTT on every one-layer model).\n")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
