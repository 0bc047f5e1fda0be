"""Which brainpy.state classes compile through BrainScale, unmodified.

Every neuron class that ``brainpy.state`` exports (found by
``brainpy_neurons.discover``: subclasses of ``brainpy.state.Neuron``, the
NEST-style ones included) is built with its defaults (plus the few
arguments in ``brainpy_neurons.DRIVE``) into
``input -> brainstate.nn.Linear -> C -> Linear readout``, the input reaching
it through the port and at the scale of ``DRIVE`` (by default a current in
the unit of ``C.update``'s ``x``); each synapse class into an
``AlignPostProj`` (AlignPost kinetics) or in front of the weights (STD/STP
and other presynaptic kinetics). For every model: BPTT through BrainScale
vs brainstate's own ``transform.grad`` (relative max error, float64; of the
batched model, or averaged over per-sample runs for classes whose states
take no batch axis, as the NEST ones), D-RTRL and ES-D-RTRL vs BPTT, the
fraction of (step, sample, neuron) that spiked, or the error each stage
gives with its category: (a) integer/bool hidden state, (b) a
``lax.while_loop`` in the step, (c) other. A second table lists per neuron
class its drive, integer hidden leaves, while loops (and where they come
from) and integrator.

    python benchmarks/brainpy_coverage.py [--out docs/brainpy_coverage.md]
        [--only NAME ...] [--quick]

``--quick``: trace and analyse only (``jax.eval_shape`` of each learner's
``sequence_grad``: every compile error, no XLA, no numbers, no reference).
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import sys
import time
import traceback

# python puts this folder first on sys.path, where a module named like an optional
# package (a benchmarks/coverage.py for `coverage`, which numba tries to import)
# would be imported in its place: take the folder off, load the helper by path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [q for q in sys.path if os.path.abspath(q or ".") != _HERE]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)

import braintools  # noqa: E402
import brainstate  # noqa: E402
import brainunit as u  # noqa: E402
import brainpy.state as bp  # noqa: E402

import brainscale as bs  # noqa: E402
from brainscale.interop.brainstate_adapter import from_brainstate  # noqa: E402


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(_HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NB, common = _load("brainpy_neurons"), _load("common")

N_IN, N, N_OUT, T, B = 4, 6, 2, 30, 3
DT = 0.1 * u.ms
ALGORITHMS = ("bptt", "d_rtrl", "es_d_rtrl")
NEURONS, EXCLUDED = NB.discover()
_SPIKES: dict = {}         # id(net) -> the neuron output of the step being traced
POST_SYNAPSES = ["Expon", "DualExpon"]
PRE_SYNAPSES = ["STD", "STP", "Alpha", "AMPA", "GABAa", "BioNMDA"]


def _linear(n_in, n_out, unit=u.UNITLESS):
    return brainstate.nn.Linear(n_in, n_out,
                                w_init=braintools.init.KaimingNormal(scale=4.0, unit=unit),
                                b_init=braintools.init.Constant(0.5 * unit))


class NeuronNet(brainstate.nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.spec = NB.drive(cls.__name__)
        self.fc = _linear(N_IN, N)
        self.neuron = cls(N, **self.spec["kwargs"])
        self.readout = _linear(N, N_OUT)

    def update(self, x):
        z = self.fc(x)
        s = jnp.asarray(u.get_mantissa(NB.feed(self.neuron, self.spec, z)),
                        dtype=jnp.result_type(float))
        s = jnp.broadcast_to(s, jnp.shape(z))       # ignore_and_fire returns a scalar
        _SPIKES[id(self)] = s
        return self.readout(s)


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
    """Relative max error; entries NaN in both count as equal (ExpIF's and
    siegert_neuron's gradients have NaNs under brainstate.grad too)."""
    out = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        d = jnp.where(jnp.isnan(x) & jnp.isnan(y), 0.0, jnp.abs(x - y))
        out = max(out, float(jnp.max(d) / (jnp.nanmax(jnp.abs(y)) + 1e-300)))
    return out


def _has_nan(tree) -> bool:
    return any(bool(jnp.isnan(a).any()) for a in jax.tree.leaves(tree))


def _batched(net) -> bool:
    """Whether init_all_states(batch_size=B) gave every carried state a batch axis
    (the NEST classes ignore batch_size)."""
    leaves = [a for st in net.states().values() if not isinstance(st, brainstate.ParamState)
              for a in jax.tree.leaves(u.get_mantissa(st.value))]
    return all(jnp.ndim(a) >= 2 and jnp.shape(a)[0] == B for a in leaves)


def _carried(net):
    return {k: st for k, st in net.states().items() if not isinstance(st, brainstate.ParamState)}


def _reference(net, xs, ys, init):
    """(brainstate's gradient of the mean loss or the exception it raised,
    fraction of neuron outputs > 0.5 or None), from the per-sample initial
    state ``init`` ({path: value}) the learners start from (HH and
    MorrisLecar draw theirs at random). Models whose states take no batch
    axis run sample by sample."""
    with brainstate.environ.context(dt=DT):          # NEST classes read dt here
        brainstate.nn.init_all_states(net, batch_size=B)
        batched = _batched(net)
        if not batched:
            brainstate.nn.init_all_states(net)
    params = net.states(brainstate.ParamState)
    carried = _carried(net)
    if batched:     # to the batched shape (ignore_and_fire keeps a scalar per sample)
        init = {k: jax.tree.map(lambda a, b: u.math.broadcast_to(a, u.math.shape(b)),
                                v, carried[k].value,
                                is_leaf=lambda a: isinstance(a, u.Quantity))
                for k, v in init.items()}
    for k, st in carried.items():
        st.value = init[k]
    ce = bs.losses.cross_entropy

    def run(xs_, ys_, loss_fn):
        def body(i, x, y):
            with brainstate.environ.context(t=i * DT):    # refractory models read t
                out = net(x)
                return loss_fn(u.get_mantissa(out), y), _SPIKES.get(id(net), jnp.zeros(()))
        with brainstate.environ.context(dt=DT):
            return brainstate.transform.for_loop(body, jnp.arange(T), xs_, ys_)

    def loss():
        if batched:
            losses, spikes = run(xs, ys, jax.vmap(ce))
            return losses.mean(), spikes
        total, spikes = 0.0, []
        for b in range(B):
            for k, st in carried.items():
                st.value = init[k]
            losses, sp = run(xs[:, b], ys[:, b], ce)
            total, spikes = total + losses.mean(), spikes + [sp]
        return total / B, jnp.stack(spikes, 1)

    def rate(spikes):
        return float(jnp.mean(spikes > 0.5)) if isinstance(net, NeuronNet) else None

    try:
        grads, spikes = brainstate.transform.grad(loss, params, has_aux=True)()
    except Exception as e:                  # e.g. reverse mode through a while_loop
        try:
            for k, st in carried.items():
                st.value = init[k]
            return e, rate(loss()[1])
        except Exception:                   # noqa: BLE001
            return e, None
    out = {}
    for path, g in grads.items():
        d = out
        for k in path[:-1]:
            d = d.setdefault(str(k), {})
        d[str(path[-1])] = jax.tree.map(u.get_mantissa, g,
                                        is_leaf=lambda a: isinstance(a, u.Quantity))
    return out, rate(spikes)


def _groups(learner, x) -> str:
    """The learner's hidden groups ('' where the graph is not at hand)."""
    try:
        graph = learner.graph_for(x) if hasattr(learner, "graph_for") else learner.graph
        return "; ".join("+".join(g.paths).replace("hidden", "") for g in graph.groups)
    except Exception:                                       # noqa: BLE001
        return ""


def _err(e) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    if os.environ.get("BRAINSCALE_DEBUG"):
        traceback.print_exception(e)
    return f"{type(e).__name__}: {msg[:200]}".replace("|", "/")


def check(kind, name, make, one_layer=True, quick=False):
    """One row (a dict): BPTT must equal brainstate's gradient; D-RTRL must
    equal BPTT on one layer; ES-D-RTRL's error vs BPTT is reported. Each
    stage that fails records its error and category."""
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.4, (T, B, N_IN)).astype(jnp.float64)
    ys = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, N_OUT)
    brainstate.random.seed(0)
    row = dict(kind=kind, cls=name, result="error", bptt="", d="", es="", rate="", fc="",
               cat="", info="", detail=None)
    try:
        with brainstate.environ.context(dt=DT):    # some classes read dt when built
            net = make(getattr(bp, name.split(" ")[0], None))
        step = from_brainstate(net, dt=DT)
        init = {k: st.value for k, st in _carried(net).items()}   # the learners' start
        params, hidden = step.init(jax.random.PRNGKey(0), xs[0, 0])
    except Exception as e:                         # the row records the error instead
        row.update(info="build: " + _err(e), cat=NB.category(str(e), None))
        return row
    feats = NB.features(step, params, hidden, xs[0, 0]) if isinstance(net, NeuronNet) else None
    if isinstance(net, NeuronNet):
        row["detail"] = dict(drive=NB.describe_drive(net.spec), note=net.spec["note"],
                             integrator=NB.integrator_of(net.neuron),
                             option=NB.fixed_step_option(type(net.neuron)), **feats)
    grads, errs, groups = {}, {}, ""
    for alg in ALGORITHMS:
        try:
            learner = bs.online(step, alg)
            state = learner.init(jax.random.PRNGKey(0), xs[0])
            if quick:
                jax.eval_shape(learner.sequence_grad, state, xs, ys)
                grads[alg] = None
            else:
                grads[alg], _ = learner.sequence_grad(state, xs, ys)
            groups = groups or _groups(learner, xs[0])
        except Exception as e:                     # noqa: BLE001
            errs[alg] = e
    if errs:
        alg, e = next(iter(errs.items()))
        row["cat"] = NB.category(str(e), feats)
        row["info"] = f"{'/'.join(errs)}: {_err(e)}"
        for a, e2 in list(errs.items())[1:]:
            if _err(e2) != _err(e):
                row["info"] += f"; {a}: {_err(e2)}"
        row["result"] = "error" if not grads else "only " + "+".join(grads)
    else:
        row["info"] = groups
    for a, col in (("bptt", "bptt"), ("d_rtrl", "d"), ("es_d_rtrl", "es")):
        row[col] = "ok" if a in grads else "fails"
    if quick:
        if not errs:
            row["result"] = "traces"
        return row
    ref, rate = _reference(net, xs, ys, init)
    row["rate"] = "" if rate is None else f"{rate:.0%}"
    if name in NB.RATE_MODELS and rate is not None:
        row["rate"] = "rate model"
    if "bptt" in grads:
        if isinstance(ref, Exception):
            row["bptt"] = "ref fails"
            row["info"] += f"; brainstate.grad: {_err(ref)}"
        else:
            e_bptt = _rel(grads["bptt"], ref)
            row["bptt"] = f"{e_bptt:.1e}"
            if _has_nan(ref):
                row["info"] += "; NaN entries in brainstate.grad's gradient too"
        for a, col in (("d_rtrl", "d"), ("es_d_rtrl", "es")):
            if a in grads:
                row[col] = f"{_rel(grads[a], grads['bptt']):.1e}"
        fc = grads["bptt"].get("fc") if isinstance(grads["bptt"], dict) else None
        if fc is not None:      # surrogate spikes carry a gradient back to the input weights
            row["fc"] = "0" if all(not jnp.any(a) for a in jax.tree.leaves(fc)) else "≠0"
        if not errs and not isinstance(ref, Exception):
            ok = e_bptt < 1e-8 and (float(row["d"]) < 1e-8 or not one_layer)
            row["result"] = "compiles" if ok else "MISMATCH"
        elif not errs:
            row["result"] = "compiles, no ref"
    return row


COLUMNS = ("kind", "class", "result", "BPTT vs brainstate.grad", "D-RTRL vs BPTT",
           "ES-D-RTRL vs BPTT", "spiked", "grad fc", "failure", "hidden groups / error")
KEYS = ("kind", "cls", "result", "bptt", "d", "es", "rate", "fc", "cat", "info")


def _table(rows):
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(str(r[k]) for k in KEYS) + " |\n" for r in rows)


def _details(rows):
    rows = [r for r in rows if r.get("detail")]
    if not rows:
        return ""
    out = ("| class | drive | int/bool hidden leaves | while loops (innermost library frame) "
           "| integrator | integrator argument | note |\n|---|---|---|---|---|---|---|\n")
    for r in rows:
        d = r["detail"]
        ints = ", ".join(p.replace("['neuron']", "") for p in d["int_states"])
        out += (f"| {r['cls']} | {d['drive']} | {ints} | {'; '.join(d['whiles'])} | "
                f"{d['integrator']} | {d['option']} | {d['note']} |\n")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join("docs", "brainpy_coverage.md"))
    p.add_argument("--only", nargs="*", help="class names to check")
    p.add_argument("--quick", action="store_true",
                   help="trace and analyse only: compile errors, no numbers")
    args = p.parse_args(argv)
    jobs = ([("neuron (NEST)" if NB.is_nest(n) else "neuron", n, NeuronNet) for n in NEURONS]
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
    t0, rows = time.time(), []
    progress = common.Progress(len(jobs))
    with brainstate.environ.context(precision=64):
        for j in jobs:
            i = progress.start(f"{j[0]} {j[1]}")
            rows.append(check(*j, **({"quick": True} if args.quick else {})))
            r = rows[-1]
            progress.done(i, " ".join(filter(None, (r["result"], r["cat"], r["info"][:150]))))
            jax.clear_caches()                     # ~100 models: keep memory bounded
            gc.collect()
    elapsed = time.time() - t0
    table, details = _table(rows), _details(rows)
    print(table)
    n_ok = sum(r["result"] == "compiles" for r in rows)
    what = "trace through every algorithm" if args.quick else \
        "compile with exact BPTT gradients"
    if args.quick:
        n_ok = sum(r["result"] == "traces" for r in rows)
    summary = f"{n_ok} of {len(rows)} models {what} ({elapsed:.0f} s)"
    print(summary)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        excluded = "".join(f"- `{k}`: {v}\n" for k, v in EXCLUDED.items())
        with open(args.out, "w") as f:
            f.write("# brainpy.state classes through BrainScale\n\n"
                    "Written by `python benchmarks/brainpy_coverage.py"
                    + (" --quick" if args.quick else "") + "` (float64, "
                    f"T={T}, B={B}, dt={DT}). Relative max errors; `spiked`: fraction of "
                    "(step, sample, neuron) whose output exceeds 0.5; `grad fc`: whether BPTT's "
                    "gradient of the input Linear is nonzero (0: the output spike carries no "
                    "surrogate gradient). Failure categories: "
                    "(a) integer/bool hidden state, (b) `lax.while_loop` in the step, "
                    "(c) other.\n\n" + table
                    + f"\n{summary} (and D-RTRL equal to BPTT on every one-layer model).\n"
                    + ("\n## Neuron classes: drive and what the compiler meets\n\n" + details
                       if details else "")
                    + f"\nNeuron classes: the exported subclasses of `brainpy.state.Neuron`, "
                    f"{len(NEURONS)} found; left out:\n\n{excluded}")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
