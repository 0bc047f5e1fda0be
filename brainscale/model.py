"""What a learner trains: one time step over pytrees.

``StepModel(init, apply)``:
    init(rng, x) -> (params, hidden)          x is one sample
    apply(params, hidden, x) -> (hidden', out)

``elementwise`` names custom primitives of the step that act element by
element (the compiler knows jax's own). ``from_nnx(module)`` adapts a flax.nnx module whose weights are ``nnx.Param``
and whose carried state is ``brainscale.HiddenState``: ``module(x)`` is one
time step for one sample. Other variables (constants, masks, sparse indices)
are closed over.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
from flax import nnx

from brainscale.nn.state import HiddenState
from transforms.errors import HiddenStructureError


class StepModel(NamedTuple):
    """One time step of a model, written for one sample, as two pure functions.

    ``init(rng, x) -> (params, hidden)``: ``x`` is one sample (...), without
    batch or time axis; ``params`` (the weights) and ``hidden`` (the state
    carried from step to step, per sample) are any pytrees of arrays.
    ``apply(params, hidden, x) -> (hidden', out)``: one step; ``hidden'``
    keeps every leaf's shape and dtype, ``out`` is e.g. logits (n_out,). The
    learner adds the batch axis (it vmaps over B) and the time axis (it scans
    over T). ``elementwise`` names custom primitives of the step that act
    element by element (the compiler knows jax's own).

        def init(rng, x):                                # x: (n_in,)
            w = jax.random.normal(rng, (x.shape[-1], 10)) / 8
            return {"w": w}, {"v": jnp.zeros(10)}

        def apply(p, h, x):
            v = 0.9 * h["v"] + x @ p["w"]
            return {"v": v}, v                           # (10,) logits

        learner = bs.online(bs.StepModel(init, apply), "es_d_rtrl")
    """
    init: Callable[[jax.Array, Any], tuple[Any, Any]]
    apply: Callable[[Any, Any, Any], tuple[Any, Any]]
    elementwise: frozenset = frozenset()   # custom primitives that act element by element


def _copy_state(template, pure):
    state = jax.tree.map(lambda a: a, template)
    nnx.replace_by_pure_dict(state, pure)
    return state


def from_nnx(module: nnx.Module) -> StepModel:
    """Split an nnx module into (params, hidden) pure dicts and a pure step."""
    graphdef, params, hidden, rest = nnx.split(module, nnx.Param, HiddenState, ...)
    p0, h0 = params.to_pure_dict(), hidden.to_pure_dict()

    def init(rng, x):
        del rng, x
        return p0, h0

    r0 = rest.to_pure_dict()

    def apply(p, h, x):
        r = _copy_state(rest, r0)            # fresh variables: a write is seen, not a trace error
        m = nnx.merge(graphdef, _copy_state(params, p), _copy_state(hidden, h), r)
        out = m(x)
        _check_no_other_writes(r0, r.to_pure_dict(), type(module).__name__)
        return nnx.state(m, HiddenState).to_pure_dict(), out

    return StepModel(init, apply)


def _check_no_other_writes(before, after, name):
    """A step that writes a variable other than a ``HiddenState`` would lose
    the write between steps: name it and the fix."""
    old = dict(jax.tree_util.tree_flatten_with_path(before)[0])
    written = [jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_flatten_with_path(after)[0]
               if old.get(k) is not v]
    if written:
        raise HiddenStructureError(
            f"{name}'s step writes a variable that is not brainscale.HiddenState: the write "
            "would be lost between steps", path=", ".join(written),
            hint="declare the carried state as brainscale.HiddenState(value) (or a subclass "
                 "of it); weights as nnx.Param")


def to_nnx(module: nnx.Module, params, hidden=None) -> nnx.Module:
    """Write trained params (and optionally a per-sample hidden state) back
    into ``module`` in place and return it."""
    graphdef, p_state, h_state, rest = nnx.split(module, nnx.Param, HiddenState, ...)
    p_state = _copy_state(p_state, params)
    if hidden is not None:
        h_state = _copy_state(h_state, hidden)
    nnx.update(module, p_state, h_state)
    return module


def as_step_model(model) -> StepModel:
    if isinstance(model, StepModel):
        return model
    if isinstance(model, nnx.Module):
        return from_nnx(model)
    if isinstance(model, tuple) and len(model) == 2 and all(callable(f) for f in model):
        return StepModel(*model)
    from brainscale.interop.brainstate_adapter import from_brainstate, is_brainstate_module
    if is_brainstate_module(model):
        return from_brainstate(model)
    raise TypeError(
        f"cannot learn a {type(model).__name__}: pass a flax.nnx.Module, a "
        "brainstate.nn.Module or brainscale.StepModel(init, apply)")
