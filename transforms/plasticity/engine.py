"""Local plasticity on the graph IR: what a synapse sees.

A local rule updates the weight of one op from what is available at that
synapse: the op's presynaptic input ``x``, its output ``y`` (the current it
injects), the postsynaptic activity ``post`` of the neurons it drives, the
weight itself and an optional third factor (a neuromodulator, a reward, a
local error). A rule is a pair of pure functions, as in optax::

    rule.init(w, x_shape, post_shape, batch) -> state
    rule.update(state, LocalSignals) -> (dw, state)      # dw is ADDED to W_eff

(``brainscale.plasticity`` runs rules alone, ``bs.online(..., rules=...)``
beside a gradient learner.)
``post`` of an op driving hidden group G is the value the model itself
emits from G this step: a variable that depends elementwise only on G's
state and on this step's drive of G (the step's inputs may enter it in any
way, e.g. a teacher current), and that is the output of a spike
function (a surrogate-gradient primitive), or else a weight op's
presynaptic input (a rate layer's activation) or a step output.
``post_activity_vars`` finds it in the JAXPR.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
from jax.extend import core as jcore

from transforms.ir.dependence import ELEM
from transforms.errors import CompileError
from transforms.ir.graph import DENSE, Graph


class LocalSignals(NamedTuple):
    """What one synapse population sees at one step (leading axis: batch)."""
    x: jax.Array             # (B, I)   presynaptic input
    y: jax.Array             # (B, O)   the op's output current
    post: jax.Array          # (B, O)   postsynaptic activity (spikes / rates)
    w: jax.Array             # (I, O)   the effective weight W_eff
    modulator: Any           # third factor, (B,) or scalar, or None
    dpost: Any = None        # (B, O)   d post / d y (surrogate slope), for rules asking it
    target: Any = None       # (B,)     the step's label, for supervised local rules
    downstream: Any = None   # this step's dw (O, O') of each local op fed by this op's
    #                          neurons (their output synapses), for rules asking it
    state: Any = None        # {hidden path: (B, O)} the driven neurons' state after the
    #                          step (e.g. the membrane potential), for rules asking it


class Rule(NamedTuple):
    init: Callable[..., Any]
    update: Callable[[Any, LocalSignals], tuple[jax.Array, Any]]
    needs_post: bool = True      # False: the rule uses only x and y (e.g. SoftHebb on u = y)
    needs_dpost: bool = False    # True: the engine also gives d post / d y
    reset: Callable | None = None   # state at a sequence start; default: all zeros (traces)
    needs_downstream: bool = False  # True: the engine gives the dw of the driven neurons'
    #                                 output synapses (``downstream_ops``)
    needs_state: bool = False       # True: the engine gives the driven neurons' hidden state


def _emitted(graph: Graph):
    t = graph.traced
    xs = {op.x_var: op for op in graph.ops if op.x_var is not None}
    outs = list(t.out_vars)
    return xs, outs


SPIKE_PRIMITIVES = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr",
                              "heaviside_surrogate_gradient"})


def _of_group(d, own) -> bool:
    """``d`` (a var's sources) is elementwise in the group's own state and
    drive ``own``; the step's inputs may enter in any way (external drive)."""
    inner = {src: how for src, how in d.items() if src[0] != "x"}
    return bool(inner) and set(inner) <= own and all(how is ELEM for how in inner.values())


def post_activity_vars(graph: Graph, spike_primitives=SPIKE_PRIMITIVES) -> dict[int, Any]:
    """Per hidden group driven by an op: the var of its postsynaptic activity
    (see module docstring). First choice: the output of a spike function (a
    surrogate-gradient primitive) on the group; then a weight op's input
    (a rate layer's activation); then a step output."""
    t = graph.traced
    xs, outs = _emitted(graph)
    spikes = [v for eqn in t.eqns if eqn.primitive.name in spike_primitives
              for v in eqn.outvars]
    order = [v for eqn in t.eqns for v in eqn.outvars]
    result = {}
    for g in graph.groups:
        if not g.ops:
            continue
        own = {("h", j) for j in g.leaves} | {("y", k) for k in g.ops}

        def is_post(v):
            d = graph.deps.get(v)
            if not d or tuple(v.aval.shape) != g.shape:
                return False
            return _of_group(d, own) and any(src == "y" for src, _ in d)

        found = [v for v in spikes if is_post(v)]
        found += [v for v in order if v in xs and is_post(v)]
        found += [v for v in outs if not isinstance(v, jcore.Literal) and is_post(v)]
        if found:
            result[g.index] = found[0]
    return result


def downstream_ops(graph: Graph, op, candidates) -> list:
    """The ops among ``candidates`` whose presynaptic input is the activity
    of the neurons ``op`` drives: their x has the group's shape and depends
    elementwise only on that group's state and drive (e.g. ``3 * spikes``).
    These are the driven neurons' output synapses."""
    if len(op.groups) != 1:
        return []
    g = graph.groups[op.groups[0]]
    own = {("h", j) for j in g.leaves} | {("y", k) for k in g.ops}
    out = []
    for other in candidates:
        d = graph.deps.get(other.x_var) if other.x_var is not None else None
        if other is not op and d and tuple(other.x_shape) == g.shape and _of_group(d, own):
            out.append(other)
    return out


def check_rule_op(graph: Graph, op, post_vars, needs_post=True) -> None:
    """A local rule needs a dense op with a vector input; one that uses the
    postsynaptic activity needs the op to drive one group the model emits."""
    if op.kind != DENSE or len(op.x_shape) != 1 or len(op.weff_shape) != 2:
        raise CompileError(
            f"a local rule needs a dense x @ W op with a vector input; {op.path} is a "
            f"{op.kind} op, W {op.weff_shape}, x {op.x_shape}", path=op.path,
            source=op.source, hint="use a gradient algorithm for this weight")
    if not needs_post:
        return
    if len(op.groups) != 1:
        raise CompileError(f"{op.path} drives {len(op.groups)} hidden groups; a local rule "
                           "needs the one population it drives", path=op.path,
                           source=op.source)
    if op.groups[0] not in post_vars:
        raise CompileError(
            f"no postsynaptic activity found for {op.path}: nothing the step emits "
            f"depends only on hidden group G{op.groups[0]} this step", path=op.path,
            source=op.source,
            hint="feed the population's spikes to a weight op or return them from the step")


__all__ = ["LocalSignals", "Rule", "post_activity_vars", "downstream_ops", "check_rule_op"]
