"""Adapt a brainstate / ``brainpy.state`` model, unmodified, into a StepModel.

A brainstate model keeps its weights in ``brainstate.ParamState`` and what it
carries across time steps in ``brainstate.HiddenState`` (and other ``State``
subclasses); ``model(x)`` advances it by one step of ``brainstate.environ``'s
``dt``. ``from_brainstate`` turns it into the pure pair the compiler traces::

    init(rng, x)          -> (params, hidden)      # per sample, plain arrays
    apply(params, hidden, x) -> (hidden', out)

``params`` / ``hidden`` are nested dicts keyed by the module path of each
state (``params['fc']['weight']['weight']``, ``hidden['lif']['V']``).
``apply`` writes its arguments into the model's states, calls the model,
reads the states back and restores the values they had, so the model is
left exactly as it was and no tracer leaks into it.

Physical units (brainunit quantities) are stripped at this boundary: each
leaf travels as its mantissa and its unit is put back around the call. A
step that changes the unit of a state is an error naming the state.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import jax
import jax.numpy as jnp

from brainscale.model import StepModel
from transforms.errors import CompileError

__all__ = ["from_brainstate", "to_brainstate", "is_brainstate_module", "ELEMENTWISE_PRIMITIVES"]

CLOCK = "_clock"     # the hidden leaf of the time, for models that read brainstate's t

# elementwise primitives of braintools (the surrogate spike: heaviside(x) forward,
# a given dx as its derivative) and brainunit (exprel(x) = (exp(x) - 1) / x)
ELEMENTWISE_PRIMITIVES = frozenset({"heaviside_surrogate_gradient", "exprel"})


def is_brainstate_module(obj) -> bool:
    """True for a ``brainstate.nn.Module`` (brainstate not imported otherwise)."""
    import sys
    bst = sys.modules.get("brainstate")
    return bst is not None and isinstance(obj, bst.nn.Module)


def _is_quantity(a) -> bool:
    import brainunit as u
    return isinstance(a, u.Quantity)


def _strip(value):
    """(mantissa pytree, unit spec) of a state value."""
    import brainunit as u
    leaves, treedef = jax.tree.flatten(value, is_leaf=_is_quantity)
    units = tuple(u.get_unit(a) if _is_quantity(a) else None for a in leaves)
    mant = [u.get_mantissa(a) if _is_quantity(a) else a for a in leaves]
    return jax.tree.unflatten(treedef, mant), (treedef, units)


def _dress(mant, spec):
    """The state value with the units of ``spec`` put back."""
    import brainunit as u
    treedef, units = spec
    leaves = treedef.flatten_up_to(mant)
    return jax.tree.unflatten(treedef, [a if un is None else u.Quantity(a, unit=un)
                                        for a, un in zip(leaves, units)])


def _nest(flat: dict) -> dict:
    """{('a', 'b'): v} -> {'a': {'b': v}}."""
    out: dict = {}
    for path, v in flat.items():
        d = out
        for k in path[:-1]:
            d = d.setdefault(str(k), {})
        d[str(path[-1])] = v
    return out


def _get(tree: dict, path):
    for k in path:
        tree = tree[str(k)]
    return tree


def _path_str(kind, path) -> str:
    return kind + "".join(f"[{str(k)!r}]" for k in path)


def _classify(model):
    """(param states, carried states) as {path: State}, in module order."""
    import brainstate
    params, carried = {}, {}
    for path, st in model.states().items():
        if isinstance(st, brainstate.ParamState):
            params[path] = st
        elif isinstance(st, brainstate.random.RandomState):
            raise CompileError(
                "the model draws random numbers from a brainstate RandomState inside the "
                "step; a compiled step must be a function of (params, hidden, x)",
                path=_path_str("state", path),
                hint="draw the noise outside the step and pass it in as part of x")
        else:
            carried[path] = st
    return params, carried


def _env(dt, t=None):
    """brainstate.environ with the step's dt (and the time t, for models that
    read it, e.g. refractory neurons comparing t with their last spike)."""
    import brainstate
    kw = {} if t is None else {"t": t}
    if dt is not None:
        kw["dt"] = dt
    return brainstate.environ.context(**kw) if kw else contextlib.nullcontext()


def _needs_time(error: Exception) -> bool:
    return isinstance(error, KeyError) and "'t'" in str(error)


def from_brainstate(model, *, dt=None, x_unit=None,
                    call: Callable[[Any, Any], Any] | None = None,
                    init_states: bool = True) -> StepModel:
    """A StepModel over ``model``, a ``brainstate.nn.Module`` whose call is one
    time step for one sample.

    ``dt``: the step (a brainunit time such as ``0.1 * u.ms``, or a float);
    default: ``brainstate.environ``'s current ``dt``, read now. ``x_unit``:
    a unit the input is multiplied by before the call (e.g. ``u.mA`` for a
    neuron fed a current directly). ``call(model, x)`` replaces
    ``model(x)``. ``init_states``: run ``brainstate.nn.init_all_states``
    (per sample, no batch axis) first; pass False for states made by hand.
    """
    import brainstate
    if not is_brainstate_module(model):
        raise TypeError(f"from_brainstate needs a brainstate.nn.Module, got "
                        f"{type(model).__name__}")
    if dt is None:
        try:
            dt = brainstate.environ.get_dt()
        except Exception as e:
            raise ValueError(
                "brainstate.environ has no dt: pass dt= to from_brainstate (e.g. "
                "0.1 * brainunit.ms) or call brainstate.environ.set(dt=...)") from e
    if init_states:
        with _env(dt):
            brainstate.nn.init_all_states(model)
    p_states, h_states = _classify(model)
    p_spec, h_spec, p0, h0 = {}, {}, {}, {}
    for path, st in p_states.items():
        p0[path], p_spec[path] = _strip(st.value)
    for path, st in h_states.items():
        h0[path], h_spec[path] = _strip(st.value)
    p0, h0 = _nest(p0), _nest(h0)
    fn = call if call is not None else (lambda m, x: m(x))

    def init(rng, x):
        """(params, hidden); a model that reads the time ``t`` gets a clock,
        ``hidden['_clock']`` (the step count; brainstate's t is count * dt),
        which the compiler sees as autonomous: no gradient flows through it."""
        del rng
        try:
            jax.eval_shape(apply, p0, h0, x)
        except KeyError as e:
            if not _needs_time(e):
                raise
            return p0, {**h0, CLOCK: jnp.zeros((), jnp.result_type(float))}
        return p0, h0

    def apply(p, h, x):
        # look the states up again: init_all_states replaces the State objects
        p_states, h_states = _classify(model)
        if set(p_states) != set(p_spec) or set(h_states) != set(h_spec):
            raise CompileError(
                "the model's states changed since from_brainstate was called "
                f"(params {sorted(p_states)} vs {sorted(p_spec)}, carried "
                f"{sorted(h_states)} vs {sorted(h_spec)})",
                hint="call from_brainstate again after changing the model")
        states = {**p_states, **h_states}
        saved = {path: st.value for path, st in states.items()}
        # writes of traced values are legal inside a brainstate trace stack
        stack = brainstate.StateTraceStack(name="brainscale")
        stack.__enter__()
        try:
            for path, st in p_states.items():
                st.value = _dress(_get(p, path), p_spec[path])
            for path, st in h_states.items():
                st.value = _dress(_get(h, path), h_spec[path])
            xx = x if x_unit is None else jax.tree.map(lambda a: a * x_unit, x)
            t = h.get(CLOCK)
            with _env(dt, None if t is None else t * dt):
                out = fn(model, xx)
            new_h = {}
            for path, st in h_states.items():
                value, spec = _strip(st.value)
                if spec[1] != h_spec[path][1]:
                    raise CompileError(
                        f"the step changed the unit of this state from {h_spec[path][1]} "
                        f"to {spec[1]}", path=_path_str("hidden", path),
                        hint="a state must keep its physical unit from step to step")
                new_h[path] = value
            out = jax.tree.map(lambda a: _strip(a)[0] if _is_quantity(a) else a, out,
                               is_leaf=_is_quantity)
            new_h = _nest(new_h)
            if t is not None:
                new_h[CLOCK] = t + 1.0
            return new_h, out
        finally:
            for path, st in states.items():
                st.value = saved[path]
            stack.__exit__(None, None, None)

    return StepModel(init, apply, elementwise=ELEMENTWISE_PRIMITIVES)


def to_brainstate(model, params, hidden=None):
    """Write trained ``params`` (and a per-sample ``hidden``) back into the
    states of ``model`` (units restored) and return it."""
    p_states, carried = _classify(model)
    for states, tree in ((p_states, params), (carried, hidden)):
        if tree is None:
            continue
        for path, st in states.items():
            st.value = _dress(_get(tree, path), _strip(st.value)[1])
    return model
