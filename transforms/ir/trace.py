"""Trace one time step to a flat, labelled JAXPR and evaluate it with hooks.

A step is ``apply(params, hidden, x) -> (hidden', out)`` over pytrees, written
for ONE sample (the learners vmap over the batch). Tracing gives a jaxpr whose
inputs and outputs are labelled by pytree path; nested ``jax.jit`` calls are
inlined (re-tracing through ``evaluate``) so that every primitive is visible
to the analysis. ``evaluate`` is also the runtime: the learners run the traced
equations, optionally replacing some of them (e.g. a weight op's output) to
build the cut Jacobians.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.extend import core as jcore
from jax.extend import source_info_util

from transforms.ir.canonical import squeeze_rules
from transforms.ir.const_fold import identity_rules
from transforms.errors import CompileError, HiddenStructureError

_INLINE = {"jit", "pjit", "closed_call", "core_call", "checkpoint", "remat"}


def keystr(path) -> str:
    return jax.tree_util.keystr(path)


_INTERNAL = ("site-packages", "dist-packages", os.sep + "jax" + os.sep, os.sep + "transforms" + os.sep)


def source_of(eqn) -> str:
    """The user's ``file:line (function)`` that produced an equation: the
    innermost frame outside installed packages and this compiler (so a
    brainpy or flax layer points at the user's line that called it), else
    jax's own summary."""
    frame = _user_frame(eqn.source_info.traceback)
    if frame is not None:
        return f"{frame.file_name}:{frame.line_num} ({frame.function_name})"
    return source_info_util.summarize(eqn.source_info)


def _user_frame(tb):
    for frame in (tb.frames if tb is not None else ()):
        if not any(d in frame.file_name for d in _INTERNAL):
            return frame
    return None


@dataclasses.dataclass(frozen=True)
class TracedStep:
    """The step as a flat list of equations with labelled inputs/outputs."""
    jaxpr: Any                      # jax.core.Jaxpr (flat)
    consts: tuple                   # values of jaxpr.constvars
    param_paths: tuple[str, ...]
    hidden_paths: tuple[str, ...]
    x_paths: tuple[str, ...]
    out_paths: tuple[str, ...]
    param_tree: Any
    hidden_tree: Any
    x_tree: Any
    out_tree: Any
    n_params: int
    n_hidden: int

    @property
    def eqns(self):
        return self.jaxpr.eqns

    @property
    def param_vars(self):
        return self.jaxpr.invars[:self.n_params]

    @property
    def hidden_in_vars(self):
        return self.jaxpr.invars[self.n_params:self.n_params + self.n_hidden]

    @property
    def x_vars(self):
        return self.jaxpr.invars[self.n_params + self.n_hidden:]

    @property
    def hidden_out_vars(self):
        return self.jaxpr.outvars[:self.n_hidden]

    @property
    def out_vars(self):
        return self.jaxpr.outvars[self.n_hidden:]


def bind_eqn(eqn, invals):
    """Bind ``eqn``'s primitive to new inputs, keeping its source information
    (so equations re-traced through ``evaluate`` still name the user's line)."""
    params = eqn.primitive.get_bind_params(eqn.params)
    name_stack = source_info_util.current_name_stack() + eqn.source_info.name_stack
    if _user_frame(eqn.source_info.traceback) is None:     # keep the caller's line
        with eqn.ctx.manager:
            out = eqn.primitive.bind(*invals, **params)
    else:
        with source_info_util.user_context(eqn.source_info.traceback, name_stack=name_stack), \
                eqn.ctx.manager:
            out = eqn.primitive.bind(*invals, **params)
    return out if eqn.primitive.multiple_results else [out]


def evaluate(jaxpr, consts, args, *, replace: dict | None = None,
             inline: bool = False, record=None, wrap: dict | None = None):
    """Evaluate ``jaxpr``. ``replace`` maps an equation index to
    ``fn(read, eqn) -> list of outputs`` used instead of binding it; ``wrap``
    maps a var to ``fn(value) -> value`` applied where the var is defined;
    ``record`` lists vars whose values are returned beside the outputs."""
    env: dict = {}
    wrap = wrap or {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    def write(v, value):
        env[v] = wrap[v](value) if v in wrap else value

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        write(v, a)
    for i, eqn in enumerate(jaxpr.eqns):
        if replace is not None and i in replace:
            outs = replace[i](read, eqn)
        elif inline and (eqn.primitive.name in CONTROL_RULES or (
                eqn.primitive.name in _INLINE and "jaxpr" in eqn.params)):
            ctx = (source_info_util.user_context(eqn.source_info.traceback)
                   if _user_frame(eqn.source_info.traceback) is not None
                   else contextlib.nullcontext())
            with ctx:       # inner equations without a user frame take this one's
                if eqn.primitive.name in CONTROL_RULES:
                    outs = CONTROL_RULES[eqn.primitive.name](eqn, [read(v) for v in eqn.invars])
                else:
                    outs = _call(eqn.params["jaxpr"], [read(v) for v in eqn.invars])
        else:
            outs = bind_eqn(eqn, [read(v) for v in eqn.invars])
        for v, o in zip(eqn.outvars, outs):
            write(v, o)
    outs = [read(v) for v in jaxpr.outvars]
    if record is not None:
        return outs, {v: read(v) for v in record}
    return outs


def _call(closed, args):
    """Evaluate a (closed) inner jaxpr, inlining its own calls."""
    if hasattr(closed, "consts"):
        return evaluate(closed.jaxpr, closed.consts, args, inline=True)
    return evaluate(closed, (), args, inline=True)


def _cond_as_select(eqn, args):
    """``cond`` / ``switch``: every branch computed, the result selected.
    The weight ops and states of all branches become visible to the
    analysis; the value and its derivatives are the taken branch's. A cond
    with effects (a run-time error check, a callback) stays a cond: computing
    its untaken branch would run the effect."""
    if eqn.effects:
        return bind_eqn(eqn, args)
    index, ops = args[0], args[1:]
    outs = [_call(br, ops) for br in eqn.params["branches"]]
    if len(outs) == 1:
        return outs[0]
    which = jnp.clip(index.astype(jnp.int32), 0, len(outs) - 1) if len(outs) > 2 else index
    return [jax.lax.select_n(which, *vals) for vals in zip(*outs)]


MAX_UNROLL = 64


def _scan_unrolled(eqn, args):
    """A ``scan`` (``fori_loop`` with static bounds) of at most ``MAX_UNROLL``
    steps, unrolled, so that sub-steps inside a time step are plain
    equations to the analysis; longer ones stay a ``scan``."""
    p = eqn.params
    if p["length"] > MAX_UNROLL or p.get("_split_transpose"):
        return bind_eqn(eqn, args)
    nc, nk = p["num_consts"], p["num_carry"]
    consts, carry, xs = args[:nc], list(args[nc:nc + nk]), args[nc + nk:]
    order = range(p["length"] - 1, -1, -1) if p["reverse"] else range(p["length"])
    ys = {}
    for i in order:
        outs = _call(p["jaxpr"], list(consts) + carry + [x[i] for x in xs])
        carry, ys[i] = list(outs[:nk]), outs[nk:]
    n_ys = len(eqn.outvars) - nk
    stacked = [jnp.stack([ys[i][k] for i in range(p["length"])]) for k in range(n_ys)]
    return carry + stacked


CONTROL_RULES = {"cond": _cond_as_select, "scan": _scan_unrolled}


def _check_hidden(hidden, hidden_out):
    flat_in, tree_in = jax.tree_util.tree_flatten_with_path(hidden)
    flat_out, tree_out = jax.tree_util.tree_flatten_with_path(hidden_out)
    if tree_in != tree_out:
        ins = {keystr(p) for p, _ in flat_in}
        outs = {keystr(p) for p, _ in flat_out}
        missing, extra = sorted(ins - outs), sorted(outs - ins)
        if missing:
            raise HiddenStructureError(
                f"hidden state {missing[0]} is read by the step but not returned",
                path="hidden" + missing[0],
                hint="return every hidden leaf the step reads, updated or unchanged, "
                     "in the same pytree structure")
        if extra:
            raise HiddenStructureError(
                f"the step returns hidden state {extra[0]} that it was not given",
                path="hidden" + extra[0],
                hint="create every hidden leaf in the model's initial hidden state")
        raise HiddenStructureError(
            f"the returned hidden pytree has a different structure: {tree_out} vs {tree_in}",
            path="hidden")
    for (p, a), (_, b) in zip(flat_in, flat_out):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise HiddenStructureError(
                f"hidden state changes from {a.dtype}{list(a.shape)} to "
                f"{b.dtype}{list(b.shape)} in one step",
                path="hidden" + keystr(p),
                hint="keep each hidden leaf's per-sample shape and dtype fixed "
                     "(no batch axis inside the step: the learner vmaps over the batch)")


def trace_step(apply: Callable, params, hidden, x) -> TracedStep:
    """Trace ``apply(params, hidden, x)`` for one sample into a TracedStep."""
    p_flat, p_tree = jax.tree_util.tree_flatten_with_path(params)
    h_flat, h_tree = jax.tree_util.tree_flatten_with_path(hidden)
    x_flat, x_tree = jax.tree_util.tree_flatten_with_path(x)
    for path, leaf in p_flat:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise CompileError(
                f"parameter leaf has dtype {jnp.result_type(leaf)}; only floating "
                "leaves can be trained", path="params" + keystr(path),
                hint="keep integer constants (e.g. sparse indices) out of the params "
                     "pytree: close over them, or store them in a non-Param nnx.Variable")
    n_p, n_h = len(p_flat), len(h_flat)

    def flat_fn(*leaves):
        ps = jax.tree_util.tree_unflatten(p_tree, leaves[:n_p])
        hs = jax.tree_util.tree_unflatten(h_tree, leaves[n_p:n_p + n_h])
        xs = jax.tree_util.tree_unflatten(x_tree, leaves[n_p + n_h:])
        result = apply(ps, hs, xs)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise CompileError("the step must return a pair (new_hidden, output)",
                               hint="return (hidden, out) from apply(params, hidden, x)")
        h_new, out = result
        _check_hidden(hs, h_new)
        out_flat, out_tree = jax.tree_util.tree_flatten_with_path(out)
        flat_fn.out_info = out_tree, [keystr(p) for p, _ in out_flat]
        return jax.tree_util.tree_leaves(h_new) + [o for _, o in out_flat]

    leaves = [l for _, l in p_flat] + [l for _, l in h_flat] + [l for _, l in x_flat]
    avals = [jax.ShapeDtypeStruct(jnp.shape(l), jnp.result_type(l)) for l in leaves]
    closed = jax.make_jaxpr(flat_fn)(*avals)
    out_tree, out_paths = flat_fn.out_info
    flat = jax.make_jaxpr(
        lambda *a: evaluate(closed.jaxpr, closed.consts, a, inline=True))(*avals)
    for make_rules in (squeeze_rules, lambda j: identity_rules(j, flat.consts)):
        rules = make_rules(flat.jaxpr)
        if rules:
            flat = jax.make_jaxpr(
                lambda *a: evaluate(flat.jaxpr, flat.consts, a, replace=rules))(*avals)
    return TracedStep(
        jaxpr=flat.jaxpr, consts=tuple(flat.consts),
        param_paths=tuple("params" + keystr(p) for p, _ in p_flat),
        hidden_paths=tuple("hidden" + keystr(p) for p, _ in h_flat),
        x_paths=tuple("x" + keystr(p) for p, _ in x_flat),
        out_paths=tuple("out" + p for p in out_paths),
        param_tree=p_tree, hidden_tree=h_tree, x_tree=x_tree, out_tree=out_tree,
        n_params=n_p, n_hidden=n_h)
