"""Local rules inside a gradient learner: some weights follow a local rule
(``bs.online(..., rules={path: rule})``), the others the learner's gradient.

The rule-driven ops are taken out of the gradient algorithm (no eligibility
traces, no gradient computed for them); their presynaptic input, output
and postsynaptic activity are recorded in the same forward pass that gives
the learning signal, and each rule's ``dw`` is added to its weight.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from transforms.errors import CompileError
from transforms.plasticity.engine import (LocalSignals, check_rule_op, downstream_ops,
                                    post_activity_vars)
from transforms.ir.trace import evaluate


def resolve(graph, rules: dict):
    """The graph with the ops under ``rules`` marked local (their post
    activity and downstream ops recorded)."""
    by_path = {op.path: op for op in graph.ops}
    post = post_activity_vars(graph)
    out = []
    for path, rule in rules.items():
        if path not in by_path:
            raise CompileError(f"no weight op {path!r}; the model's weight ops are "
                               f"{sorted(by_path)}", path=path)
        op = by_path[path]
        check_rule_op(graph, op, post, rule.needs_post)
        if op.chain:
            raise CompileError(
                f"{path} is transformed before use (e.g. |W| * sign); a local rule changes "
                "the weight the op uses, which must be the parameter itself", path=path,
                source=op.source, hint="use a gradient algorithm for it")
        out.append((path, op, post[op.groups[0]] if rule.needs_post else op.y_var))
    return dataclasses.replace(
        graph, local_ops=frozenset(op.index for _, op, _ in out),
        local_post={path: v for path, _, v in out},
        local_downstream=_downstream(graph, rules, [op for _, op, _ in out]))


def _downstream(graph, rules, ops) -> dict:
    """{path: [downstream paths]} for the rules that need the dw of their
    neurons' output synapses; those must follow local rules too."""
    result = {}
    for op in ops:
        if not rules[op.path].needs_downstream:
            continue
        down = downstream_ops(graph, op, ops)
        if not down:
            feeds = downstream_ops(graph, op, graph.ops)
            raise CompileError(
                f"the rule on {op.path} uses the plasticity of its neurons' output synapses, "
                + (f"but {', '.join(o.path for o in feeds)} follow(s) no local rule"
                   if feeds else "but no weight op takes those neurons' activity as input"),
                path=op.path, source=op.source,
                hint="give the output synapses a local rule in the same rules dict")
        result[op.path] = [o.path for o in down]
    return result


def _order(graph) -> list:
    """Local op paths, each after the ops whose dw it uses."""
    done, order = set(), []
    pending = list(graph.local_post)
    while pending:
        ready = [p for p in pending
                 if all(d in done for d in graph.local_downstream.get(p, ()))]
        if not ready:
            raise CompileError(f"local rules wait on each other's updates in a cycle: "
                               f"{', '.join(pending)}")
        for p in ready:
            done.add(p)
            order.append(p)
            pending.remove(p)
    return order


def extra_vars(graph) -> list:
    """The vars to record per local op: x, y, post."""
    ops = {op.path: op for op in graph.ops}
    return [v for path, post in graph.local_post.items()
            for v in (ops[path].x_var, ops[path].y_var, post)]


def local_params(graph) -> frozenset:
    return frozenset(op.param for op in graph.ops if op.index in graph.local_ops)


def init_states(graph, rules, params, batch) -> dict:
    ops = {op.path: op for op in graph.ops}
    states = {}
    for path in graph.local_post:
        op = ops[path]
        post_shape = graph.groups[op.groups[0]].shape if op.groups else op.y_shape
        states[path] = rules[path].init(graph.weff(op, params[op.param]), op.x_shape,
                                        post_shape, batch)
    return states


def post_slopes(graph, rules, params, hidden, x) -> dict:
    """{path: d post / d y (B, O)} for the rules that ask for it: one forward
    linearisation per sample in each such op's output offset dy (post depends
    on y elementwise, so a tangent of ones on that op alone gives the
    per-neuron slope)."""
    ops = {op.path: op for op in graph.ops}
    paths = [p for p in graph.local_post if rules[p].needs_dpost]
    if not paths:
        return {}
    t = graph.traced
    posts = [graph.local_post[p] for p in paths]

    def one(h, xx):
        def f(dys):
            wrap = {ops[p].y_var: (lambda v, d=d: v + d) for p, d in zip(paths, dys)}
            _, env = evaluate(t.jaxpr, t.consts, list(params) + list(h) + list(xx),
                              record=posts, wrap=wrap)
            return [env[v] for v in posts]
        zeros = [jnp.zeros(ops[p].y_shape, ops[p].y_var.aval.dtype) for p in paths]
        lin = jax.linearize(f, zeros)[1]
        # one op's offset at a time: other layers' posts depend on it too
        return [lin([jnp.ones_like(z) if j == i else z for j, z in enumerate(zeros)])[i]
                for i in range(len(paths))]

    return dict(zip(paths, jax.vmap(one)(list(hidden), list(x))))


def _group_state(graph, op, hidden):
    """{hidden path: value} of the group ``op`` drives (same-shape leaves)."""
    if hidden is None or len(op.groups) != 1:
        raise CompileError(f"the rule on {op.path} reads its neurons' state, but the op "
                           f"drives {len(op.groups)} hidden groups", path=op.path,
                           source=op.source)
    paths = graph.traced.hidden_paths
    return {paths[j]: hidden[j] for j in graph.groups[op.groups[0]].leaves}


def updates(graph, rules, params, recorded, states, modulator=None, slopes=None,
            target=None, hidden=None):
    """({param index: dw}, new states) from the recorded (x, y, post) values
    (and the post slopes, the label and the new hidden leaves ``hidden``,
    for the rules that use them)."""
    ops = {op.path: op for op in graph.ops}
    index = {path: i for i, path in enumerate(graph.local_post)}
    dws, new, by_path = {}, {}, {}
    for path in _order(graph):
        op, i = ops[path], index[path]
        x, y, post = recorded[3 * i:3 * i + 3]
        down = graph.local_downstream.get(path)
        sig = LocalSignals(x, y, post.astype(x.dtype), graph.weff(op, params[op.param]),
                           modulator, (slopes or {}).get(path), target,
                           None if down is None else tuple(by_path[d] for d in down),
                           _group_state(graph, op, hidden) if rules[path].needs_state
                           else None)
        dw, new[path] = rules[path].update(states[path], sig)
        by_path[path] = dw
        dws[op.param] = dw.astype(params[op.param].dtype)
    return dws, {p: new[p] for p in graph.local_post}


def reset_states(rules, states) -> dict:
    """The rules' states at the start of a sequence (activity traces to 0)."""
    if not states:
        return states
    return {p: rules[p].reset(s) if rules[p].reset is not None
            else jax.tree.map(jnp.zeros_like, s) for p, s in states.items()}


def add(params_leaves, dws):
    """Leaves with each local dw added."""
    out = list(params_leaves)
    for i, dw in dws.items():
        out[i] = out[i] + dw
    return out


def zero_like_dws(graph, params):
    return {op.param: jnp.zeros_like(params[op.param]) for op in graph.ops
            if op.index in graph.local_ops}


__all__ = ["resolve", "extra_vars", "local_params", "init_states", "post_slopes", "updates",
           "reset_states", "add", "zero_like_dws"]
