"""Analyse a traced step into the graph IR.

1. Weight ops (``weight_ops``): every use of a parameter on a runtime value.
2. Axes (``dependence.label_axes``): which axes of each hidden leaf index
   neurons and which index one neuron's states; which equations mix neurons.
3. Dependencies (``dependence.propagate``): hidden outputs that depend within
   each neuron on hidden inputs join them in a group (union-find); an op
   drives the groups whose outputs depend within each neuron on its y.
   A dependence that mixes neurons outside a weight op (a population sum, a
   normalisation, a constant matrix) is cut for the online learners, as the
   diagonal approximation cuts a weight op's off-diagonal, and listed under
   ``approximations``.
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from transforms.errors import CompileError, NonElementwiseCouplingError, UnusedWeightError
from transforms.ir.axis_rules import CHUNKED, NEURON, STATE
from transforms.ir.const_env import ConstEnv
from transforms.ir.dependence import ELEM, AxisLabels, propagate
from transforms.ir.graph import Approximation, Graph, HiddenGroup
from transforms.ir.hidden_view import HiddenView, LeafLayout
from transforms.ir.trace import TracedStep, source_of
from transforms.ir.weight_ops import find_ops, is_int, is_var


class _UnionFind:
    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _autonomous(hidden_outs) -> set:
    """Hidden leaves that evolve on their own: each new value depends only on
    such leaves (a clock ``t' = t + dt``, a step counter, a constant), never
    on an input or a weight, so no gradient flows through them."""
    auto = set(range(len(hidden_outs)))
    changed = True
    while changed:
        changed = False
        for j in sorted(auto):
            if any(src != "h" or k not in auto for src, k in hidden_outs[j]):
                auto.discard(j)
                changed = True
    return auto


def _reaches_output(t: TracedStep, v) -> bool:
    live = {v}
    for eqn in t.eqns:
        if any(is_var(a) and a in live for a in eqn.invars):
            live.update(eqn.outvars)
    return any(is_var(o) and o in live for o in t.jaxpr.outvars)


def _label(t: TracedStep, ops, uses, elementwise) -> AxisLabels:
    """Axis classes; hidden leaves' in and out axes unified; weight ops'
    outputs mark neuron axes."""
    lab = AxisLabels(elementwise)
    skip = {i for i, eqn in enumerate(t.eqns)
            if all(not is_var(a) or uses.kind.get(a) != "rt" for a in eqn.invars)}
    fixed = {}
    for op in ops:
        inner = set(op.core[:-1])
        skip |= inner
        if op.mixing:
            y = lab.ac.fresh(len(op.y_shape))
            for c in y:
                lab.ac.mark(c, NEURON)
            fixed[op.core[-1]] = [y]
    ins = [None] * len(t.param_vars) + [lab.ac.fresh(len(v.aval.shape)) for v in
                                        list(t.hidden_in_vars) + list(t.x_vars)]
    lab.run(t.jaxpr, ins, skip=skip - set(fixed), fixed=fixed)
    for a, b in zip(t.hidden_in_vars, t.hidden_out_vars):
        if is_var(b) and lab.of(b) is not None:
            for x, y in zip(lab.of(a), lab.of(b)):
                lab.ac.union(x, y)
    return lab


def _layouts(t: TracedStep, lab: AxisLabels):
    """Per hidden leaf: its neuron and state axes (a chunked axis of k
    chunks of neurons becomes a state axis of size k and a neuron axis)."""
    out = []
    for v in t.hidden_in_vars:
        kinds, chunked = [], []
        for a, c in enumerate(lab.labels[v]):
            kind = lab.ac.kind(c)
            if (kind == NEURON and v.aval.shape[a] == 1
                    and NEURON not in lab.ac.kinds[lab.ac.find(c)]):
                kind = STATE        # a unit axis (one receptor, one delay slot) holds no neurons
            if kind == CHUNKED:
                part, k = lab.ac.chunk_of(c)
                if lab.ac.kind(part) == NEURON:
                    chunked.append((a, k))
                    kinds += [STATE, NEURON]
                    continue
                kind = STATE
            kinds.append(kind)
        dtype = v.aval.dtype
        out.append(LeafLayout(
            shape=tuple(v.aval.shape), dtype=dtype,
            neuron_axes=tuple(a for a, k in enumerate(kinds) if k == NEURON),
            state_axes=tuple(a for a, k in enumerate(kinds) if k == STATE),
            complex=bool(jnp.issubdtype(dtype, jnp.complexfloating)),
            differentiable=not is_int(v), chunked=tuple(chunked)))
    return out


def analyse(t: TracedStep, elementwise=frozenset()) -> Graph:
    """The graph IR of ``t``. ``elementwise``: names of further primitives
    (beyond jax's elementwise ones) that act element by element, e.g. a
    library's custom spike primitive."""
    uses, ops, passthrough = find_ops(t, elementwise)
    used = {op.param for op in ops}
    for p in range(t.n_params):
        if p not in used and not _reaches_output(t, t.param_vars[p]):
            raise UnusedWeightError(
                f"parameter {t.param_paths[p]} reaches no hidden state and no output; "
                "its gradient would always be zero", path=t.param_paths[p],
                hint="remove it from the params pytree, or use it in the step")
    lab = _label(t, ops, uses, elementwise)
    cores = {op.core[-1]: (op.index, passthrough[op.index] if not op.mixing else ())
             for op in ops}
    skip = {i for op in ops for i in op.core[:-1]} | {
        i for i, eqn in enumerate(t.eqns)
        if all(not is_var(a) or uses.kind.get(a) != "rt" for a in eqn.invars)}
    in_deps = ([{} for _ in t.param_vars]
               + [{} if is_int(v) else {("h", j): ELEM} for j, v in enumerate(t.hidden_in_vars)]
               + [{("x", j): ELEM} for j in range(len(t.x_vars))])
    outs, deps, cut = propagate(t, lab, in_deps, cores, skip=frozenset(skip))
    clocks = _autonomous(outs[:t.n_hidden])
    layouts = _layouts(t, lab)
    uf = _UnionFind(t.n_hidden)
    drives: dict[int, set] = {op.index: set() for op in ops}
    approx = []
    for j, d in enumerate(outs[:t.n_hidden]):
        if not layouts[j].differentiable:
            continue
        for (src, idx), how in d.items():
            if src == "h" and how is not ELEM and idx in clocks:
                continue        # no gradient flows through a clock: any use of it is fine
            if src == "h" and how is ELEM:
                uf.union(j, idx)
            elif src == "y" and how is ELEM:
                drives[idx].add(j)
            elif src == "cut" and how is ELEM and not cut[idx][0] <= {("h", c) for c in clocks}:
                eqn = t.eqns[idx]
                through = sorted(t.hidden_paths[k] if s == "h" else f"weight op {ops[k].path}"
                                 for s, k in cut[idx][0] if (s, k) not in
                                 {("h", c) for c in clocks})
                approx.append(Approximation(eqn.primitive.name, source_of(eqn),
                                            t.hidden_paths[j], ", ".join(through)))

    roots, groups, group_of = {}, [], {}
    for j in range(t.n_hidden):
        if not layouts[j].differentiable:
            continue
        r = uf.find(j)
        if r not in roots:
            roots[r] = len(groups)
            groups.append(HiddenGroup(index=len(groups), leaves=[], paths=[], shape=None))
        g = groups[roots[r]]
        shape = layouts[j].neuron_shape
        if g.shape is not None and g.shape != shape:
            raise NonElementwiseCouplingError(
                f"{t.hidden_paths[j]} {layouts[j].shape} (neurons {shape}) is coupled "
                f"within each neuron to {g.paths[0]} (neurons {g.shape}): hidden states of "
                "one population must share its neuron axes", path=t.hidden_paths[j],
                hint="keep one axis per neuron dimension in every state of a population; "
                     "put a neuron's several states on an extra axis (z[..., k]) or in "
                     "separate arrays")
        g.shape = shape
        g.leaves.append(j)
        g.paths.append(t.hidden_paths[j])
        group_of[j] = g.index
    view = HiddenView.build(layouts)
    group_of_slot = {}
    for g in groups:
        for j in g.leaves:
            g.slots.extend(view.slots_of(j))
        group_of_slot.update({s: g.index for s in g.slots})

    final = []
    for op in ops:
        op_groups = sorted({group_of[j] for j in drives[op.index]})
        for g in op_groups:
            groups[g].ops.append(op.index)
            if groups[g].shape != op.y_shape:
                raise NonElementwiseCouplingError(
                    f"weight op {op.path} produces {op.y_shape} but drives hidden group "
                    f"{groups[g].paths} of neuron shape {groups[g].shape}", path=op.path,
                    source=op.source, hint="the op's output must have the population's shape")
        if not op_groups and not _reaches_output(t, op.y_var):
            raise UnusedWeightError(
                f"parameter {op.path} reaches no hidden state and no output; its gradient "
                "would always be zero", path=op.path, source=op.source)
        pre = set()
        if op.x_var is not None:
            for (src, idx) in deps.get(op.x_var, {}):
                if src == "h" and idx in group_of:
                    pre.add(f"G{group_of[idx]}")
                elif src == "x":
                    pre.add(t.x_paths[idx])
                elif src == "y":
                    pre.update(f"G{group_of[j]}" for j in drives[idx])
        final.append(dataclasses.replace(op, groups=op_groups, pre=sorted(pre)))
    loops = _loops(t, lab)
    return Graph(traced=t, ops=final, groups=groups, group_of_leaf=group_of,
                 const_env=ConstEnv(t, uses.kind), deps=deps, view=view,
                 group_of_slot=group_of_slot, cuts={i: held for i, (_, held) in cut.items()},
                 approximations=tuple(dict.fromkeys(approx)), clocks=frozenset(clocks),
                 loops=loops)


def _loops(t: TracedStep, lab) -> frozenset:
    """The ``while_loop`` equations, which the learning signal differentiates
    in forward mode (``learning.loop_vjp``): each must act within each
    neuron, on arrays of one neuron shape and values shared by all neurons
    (scalars, size-one arrays such as one receptor's time constant)."""
    found = set()
    for i, eqn in enumerate(t.eqns):
        if eqn.primitive.name != "while":
            continue
        shapes = {tuple(v.aval.shape) for v in list(eqn.invars) + list(eqn.outvars)
                  if is_var(v) and not is_int(v) and math.prod(v.aval.shape) > 1}
        if lab.mixes_neurons(t.jaxpr, i) or len(shapes) > 1:
            why = ("its body combines the states of different neurons (e.g. a population "
                   "sum)" if lab.mixes_neurons(t.jaxpr, i)
                   else f"it holds arrays of several neuron shapes {sorted(shapes)}")
            raise CompileError(
                f"a lax.while_loop in the step is not per neuron: {why}; reverse mode "
                "cannot differentiate it and the online learners need its Jacobian per "
                "neuron", primitive="while", source=source_of(eqn),
                hint="integrate each neuron on its own inside the loop (all its states of "
                     "one shape), or use lax.fori_loop / lax.scan with static bounds")
        found.add(i)
    return frozenset(found)


__all__ = ["analyse", "CompileError", "ELEM"]
