"""Every neuron class of ``brainpy.state``, and how to build and drive it.

Used by ``brainpy_coverage.py``. The classes are found, not listed: every
class that ``brainpy.state`` exports and that subclasses its neuron base,
``brainpy.state.Neuron`` (the NEST-style ones subclass ``NESTNeuron``, itself
a ``Neuron``), less ``EXCLUDED``. ``DRIVE`` holds what a class needs beyond
its defaults: constructor arguments, the input port and the input scale at
which it spikes sometimes (2%-60% of (step, sample, neuron) with the random
input of the coverage script; a NEST neuron with a 2 ms refractory period
fires at most about 3 times in 30 steps of 0.1 ms, so ~3-7% is its ceiling).

The network is ``input -> brainstate.nn.Linear -> C -> Linear readout``; the
Linear output ``z`` reaches the neuron through one of these ports:

* ``x`` (default): ``C.update(z * scale * unit)``, where ``unit`` is that of
  ``update``'s default ``x`` (mA for the brainpy classes, pA for the NEST
  ones, uA for HH-type, mV/ms for Izhikevich, mV for the binary neurons) and
  nothing for a unitless ``x`` (rate neurons, FitzHughNagumo, ...). The NEST
  classes buffer it one step (``I_stim``/``i_0``), like NEST's ring buffer.
* ``delta``: ``C.add_delta_input('drive', z * scale, label=...)`` then
  ``C.update()``, for classes whose ``update`` ignores ``x``.
* any other name: ``C.update(**{port: z * scale})``.

The conductance-based NEST classes (``*_cond_*``) would take presynaptic
spikes as conductance jumps (nS) through ``add_delta_input(label='w_ex')``
or ``w_by_rec=``; driving them through the current port ``x`` keeps one
network for all.
"""
from __future__ import annotations

import inspect

import brainunit as u
import brainpy.state as bp

NEURON_BASE = bp.Neuron

# exported subclasses of the neuron base that are not neurons one can build
EXCLUDED = {
    "Neuron": "abstract base of all neuron classes (update not implemented)",
    "NESTNeuron": "abstract base of the NEST-style neuron classes (update not implemented)",
}

_NOISE = ("without update(noise=...) it draws its noise from brainstate's global RNG "
          "inside the step: UnexpectedTracerError (a key<fry> tracer escapes)")
_PA = 1e4          # NEST neurons (C_m ~ 250 pF, 2 ms refractory) need ~10 nA to fire in 3 ms
# name -> dict(scale=, port=, label=, kwargs=, note=); missing keys: the defaults
DRIVE = {
    # brainpy-style classes (input in mA, uA, mV/ms or unitless)
    "IF": dict(scale=10.), "LIF": dict(scale=10.), "CubaLIF": dict(scale=10.),
    "CobaLIF": dict(scale=10.), "ALIF": dict(scale=10.), "LIFRef": dict(scale=100.),
    "ExpIF": dict(scale=30.), "ExpIFRef": dict(scale=30.), "AdExIF": dict(scale=100.),
    "AdExIFRef": dict(scale=1e3), "QuaIF": dict(scale=1e3), "AdQuaIF": dict(scale=1e3),
    "AdQuaIFRef": dict(scale=1e3), "Gif": dict(scale=10.), "GifRef": dict(scale=100.),
    "Izhikevich": dict(scale=100.), "IzhikevichRef": dict(scale=100.),
    "HH": dict(scale=100.), "WangBuzsakiHH": dict(scale=100.), "MorrisLecar": dict(scale=1e3),
    "FitzHughNagumo": dict(scale=1.), "HindmarshRose": dict(scale=10.),
    # NEST-style classes that need more than a current into x
    "izhikevich": dict(scale=1e3),
    "aeif_psc_delta_clopath": dict(scale=1e5),
    "ignore_and_fire": dict(port="none", kwargs=dict(rate=1000. * u.Hz),
                            note="fires at a fixed rate and ignores its input"),
    "parrot_neuron": dict(port="delta", scale=1.,
                          note="repeats the spikes given by add_delta_input"),
    "rate_transformer_node": dict(port="delta", scale=1., note="rate of its delta inputs"),
    "iaf_chs_2007": dict(port="delta", label="w_ex", scale=1.,
                         note="ignores x: excitatory input via add_delta_input(label='w_ex')"),
    "astrocyte_lr_1994": dict(port="spike_weights", scale=1.,
                              note="astrocyte, not a neuron; returns its slow inward current"),
    "cm_default": dict(kwargs=dict(compartments=[
        {"parent_idx": -1, "params": {"C_m": 89.245, "g_L": 8.925, "e_L": -75.0,
                                      "gbar_Na": 4608.7, "e_Na": 60.0, "gbar_K": 956.1,
                                      "e_K": -90.0}},
        {"parent_idx": 0, "params": {"C_m": 1.93, "g_C": 1.255, "g_L": 0.193, "e_L": -75.0}}]),
        note="needs compartments=: soma + one dendrite (from its docstring); x -> soma"),
    "gauss_rate_ipn": dict(scale=1., kwargs=dict(sigma=1.0), extra=dict(noise=0.0),
                           note="sigma=0 (default) makes the gain 0/0 = NaN; " + _NOISE),
    "siegert_neuron": dict(scale=10.),
    "mcculloch_pitts_neuron": dict(kwargs=dict(theta=2. * u.mV),
                                   note="theta=0 mV (default): 87% of outputs are 1"),
    "ht_neuron": dict(scale=1e4, note="output is 1 at rest: update() passes a {1e-12, -1} "
                      "spike flag to get_spike, which compares it with theta (-51 mV)"),
    "gif_pop_psc_exp": dict(scale=1., note="population model in NumPy, Python state"),
}
for _n in ("lin_rate_ipn", "lin_rate_opn", "rate_neuron_ipn", "rate_neuron_opn",
           "sigmoid_rate_gg_1998_ipn", "sigmoid_rate_ipn", "tanh_rate_ipn", "tanh_rate_opn",
           "threshold_lin_rate_ipn", "threshold_lin_rate_opn"):
    DRIVE[_n] = dict(scale=1., extra=dict(noise=0.0), note=_NOISE)
RATE_MODELS = {"lin_rate_ipn", "lin_rate_opn", "gauss_rate_ipn", "rate_neuron_ipn",
               "rate_neuron_opn", "rate_transformer_node", "siegert_neuron",
               "sigmoid_rate_gg_1998_ipn", "sigmoid_rate_ipn", "tanh_rate_ipn", "tanh_rate_opn",
               "threshold_lin_rate_ipn", "threshold_lin_rate_opn", "astrocyte_lr_1994"}


def discover():
    """(names, excluded): the exported neuron classes in alphabetical order
    (brainpy ones first: upper case sorts before lower), and {name: reason}
    of those left out."""
    names = []
    for name in sorted(dir(bp)):
        obj = getattr(bp, name)
        if inspect.isclass(obj) and issubclass(obj, NEURON_BASE) and name not in EXCLUDED:
            names.append(name)
    return names, dict(EXCLUDED)


def is_nest(name) -> bool:
    return issubclass(getattr(bp, name), bp.NESTNeuron)


def input_unit(cls):
    default = inspect.signature(cls.update).parameters.get("x")
    value = None if default is None else default.default
    return u.get_unit(value) if isinstance(value, u.Quantity) else None


def drive(name) -> dict:
    """The full drive spec of a class: scale, port, label, unit, kwargs, note."""
    cls = getattr(bp, name)
    unit = input_unit(cls)
    spec = {"scale": _PA if unit == u.pA else 1., "port": "x", "label": None,
            "kwargs": {}, "extra": {}, "note": ""}
    spec.update(DRIVE.get(name, {}))
    spec["unit"] = unit if spec["port"] == "x" else None
    return spec


def describe_drive(spec) -> str:
    scale = f"{spec['scale']:g}"
    if spec["port"] == "x":
        d = f"x={scale} {spec['unit']}" if spec["unit"] is not None else f"x={scale}"
    elif spec["port"] == "delta":
        d = f"add_delta_input({scale}" + (f", label={spec['label']!r})" if spec["label"] else ")")
    elif spec["port"] == "none":
        d = "none"
    else:
        d = f"{spec['port']}={scale}"
    if spec["extra"]:
        d += ", " + ", ".join(f"{k}={v}" for k, v in spec["extra"].items())
    if spec["kwargs"]:
        d += "; " + ", ".join(f"{k}={v}" for k, v in spec["kwargs"].items()
                              if k != "compartments") + (
            "compartments=2" if "compartments" in spec["kwargs"] else "")
    return d


def feed(neuron, spec, z):
    """Call ``neuron`` on the Linear output ``z`` through the port of ``spec``."""
    s = z * spec["scale"]
    if spec["port"] == "x":
        return neuron(s if spec["unit"] is None else s * spec["unit"], **spec["extra"])
    if spec["port"] == "delta":
        # a trace that failed before the neuron consumed its input (from_brainstate
        # retries once with a clock when the step reads t) leaves it registered
        stale = getattr(neuron, "_delta_inputs", None) or {}
        for k in [k for k in stale if k.split(" // ")[-1] == "drive"]:
            stale.pop(k)
        neuron.add_delta_input("drive", s, label=spec["label"])
        return neuron()
    if spec["port"] == "none":
        return neuron()
    return neuron(**{spec["port"]: s})


# -- what a class has that the compiler may not take ---------------------------------

def integrator_of(neuron) -> str:
    """'AdaptiveRungeKuttaStep(RKF45, atol=..)' when the neuron integrates with
    brainpy.state's adaptive embedded RK (a lax.while_loop), else ''."""
    integ = getattr(neuron, "integrator", None)
    if integ is None or type(integ).__name__ != "AdaptiveRungeKuttaStep":
        return ""
    try:
        from brainpy_state._nest_base.utils import tableau_mapping
        method = next(k for k, v in tableau_mapping.items() if v is integ.tableau)
    except Exception:                                       # noqa: BLE001
        method = "?"
    return f"{type(integ).__name__}({method}, atol={integ.atol:g})"


def fixed_step_option(cls) -> str:
    """Constructor arguments that could choose the integrator."""
    params = inspect.signature(cls.__init__).parameters
    hits = [p for p in params if any(k in p.lower() for k in ("method", "integrat", "solver"))]
    return ",".join(hits) if hits else "none"


def _prims(jaxpr, acc):
    import jax
    for e in jaxpr.eqns:
        acc.append(e)
        for p in e.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    _prims(sub.jaxpr, acc)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    _prims(sub, acc)
    return acc


def _where(eqn) -> str:
    """The innermost brainpy_state (else braintools, else brainstate) frame of an
    eqn, as 'path:line (function)'."""
    try:
        from jax._src import source_info_util as si
        frames = list(si.user_frames(eqn.source_info.traceback))
    except Exception:                                       # noqa: BLE001
        return "?"
    for pkg in ("brainpy_state/", "braintools/", "brainstate/"):
        for f in frames:
            fn = f.file_name.replace("\\", "/")
            if pkg in fn:
                return f"{pkg}{fn.split(pkg, 1)[1]}:{f.start_line} ({f.function_name})"
    return "jax-internal (e.g. jax.random.poisson's rejection loop)"


def features(step, params, hidden, x):
    """Static look at one per-sample step: integer/bool hidden leaves and the
    while loops (with where they come from)."""
    import jax
    import jax.numpy as jnp
    ints = [jax.tree_util.keystr(p) for p, a in jax.tree_util.tree_flatten_with_path(hidden)[0]
            if not jnp.issubdtype(jnp.result_type(a), jnp.floating)]
    whiles = []
    try:
        jp = jax.make_jaxpr(step.apply)(params, hidden, x)
        whiles = sorted({_where(e) for e in _prims(jp.jaxpr, []) if e.primitive.name == "while"})
    except Exception as e:                                  # noqa: BLE001
        whiles = [f"(step not traceable: {type(e).__name__})"]
    return {"int_states": ints, "whiles": whiles}


def category(msg: str, feats: dict | None) -> str:
    """(a) integer/bool hidden state, (b) lax.while_loop, (c) something else."""
    m = msg.lower()
    if "float0" in m or ("dtype" in m and any(t in m for t in ("int32", "int64", "uint32",
                                                                  "bool", "integer"))):
        return "(a) int/bool state"
    if "while_loop" in m and "carry input and carry output" not in m:
        return "(b) while_loop"
    return "(c) other"
