"""Analyse a traced step into the graph IR.

1. Weight ops. Every var is parameter-only (depends on one parameter leaf and
   constants), constant, or runtime (depends on hidden state or input). The
   first equation that meets a parameter-only var with a runtime var is the
   parameter's *core* op: ``dot_general`` (``x @ W``, ``jnp.dot``, two-operand
   ``einsum``), ``conv_general_dilated``, elementwise ``mul`` (``W * x``),
   ``add`` (a bias), ``bcoo_dot_general``, or gather -> mul -> scatter-add
   (``segment_sum(W * x[pre], post)``, sparse connectivity). The
   parameter-only equations before it form the op's ``chain``.
2. Dependencies. Each runtime var carries the sources it depends on (hidden
   inputs, inputs, weight-op outputs) and whether the dependence is still
   elementwise; mixing ops cut dependencies, since the traces account for
   them through their inputs.
3. Groups and relations. Hidden outputs that depend elementwise on hidden
   inputs join them in a group (union-find); an op drives the groups whose
   outputs depend elementwise on its y. Anything else that couples hidden
   states is an error naming primitive, path and source line.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax.extend import core as jcore

from transforms.errors import (CompileError, NonElementwiseCouplingError,
                               UnsupportedWeightUseError, UnusedWeightError,
                               WeightSharedError)
from transforms.graph import (BCOO, BIAS, CONV, DENSE, SCALE, SPARSE, Graph,
                              HiddenGroup, WeightOp)
from transforms.trace import TracedStep, _bind, source_of

ELEMENTWISE = frozenset("""
abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp conj
convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2
expm1 floor ge gt imag integer_pow is_finite le lgamma log log1p logistic lt max min
mul ne neg nextafter not or pow real reduce_precision rem round rsqrt select_n sign
sin sinh sqrt square stop_gradient sub tan tanh xor
""".split())
_RESHAPES = {"reshape", "squeeze", "expand_dims"}
_CUSTOM = {"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"}
ELEM = None          # marker: dependence is elementwise


def _is_var(a):
    return not isinstance(a, jcore.Literal)


def _inner_jaxpr(eqn):
    for key in ("call_jaxpr", "fun_jaxpr", "jaxpr"):
        if key in eqn.params:
            j = eqn.params[key]
            return (j.jaxpr, j.consts) if hasattr(j, "jaxpr") else (j, ())
    return None, ()


def _merge(into, deps, mixed_at=None):
    for src, how in deps.items():
        if mixed_at is not None and how is ELEM:
            how = mixed_at
        if into.get(src, ELEM) is ELEM:
            into[src] = how


def propagate(jaxpr, in_deps, *, cores=None, elementwise=ELEMENTWISE):
    """Per-var dependencies through ``jaxpr``. ``cores`` maps the index of an
    op's last core equation to ``(op_index, elementwise_operand_vars)``;
    ``elementwise`` names the primitives that do not mix array elements."""
    deps = dict(zip(jaxpr.invars, in_deps))

    def get(a):
        return deps.get(a, {}) if _is_var(a) else {}

    for i, eqn in enumerate(jaxpr.eqns):
        name = eqn.primitive.name
        if cores is not None and i in cores:
            k, passthrough = cores[i]
            d = {("y", k): ELEM}
            for a in passthrough:
                _merge(d, get(a))
            deps[eqn.outvars[0]] = d
            continue
        if name in elementwise:
            d = {}
            out_shape = eqn.outvars[0].aval.shape
            for a in eqn.invars:
                scalar_bcast = _is_var(a) and a.aval.shape != out_shape
                _merge(d, get(a), (name, source_of(eqn)) if scalar_bcast else None)
            outs = [d] * len(eqn.outvars)
        elif name in _CUSTOM:
            inner, _ = _inner_jaxpr(eqn)
            n_extra = len(eqn.invars) - len(inner.invars)
            outs = propagate(inner, [get(a) for a in eqn.invars[n_extra:]],
                             elementwise=elementwise)[0]
        elif name == "cond":
            idx_deps = {}
            _merge(idx_deps, get(eqn.invars[0]), (name, source_of(eqn)))
            outs = [dict(idx_deps) for _ in eqn.outvars]
            for br in eqn.params["branches"]:
                br_outs = propagate(br.jaxpr, [get(a) for a in eqn.invars[1:]],
                                    elementwise=elementwise)[0]
                for o, d in zip(outs, br_outs):
                    _merge(o, d)
        else:
            d = {}
            for a in eqn.invars:
                _merge(d, get(a), (name, source_of(eqn)))
            outs = [d] * len(eqn.outvars)
        for v, d in zip(eqn.outvars, outs):
            deps[v] = d
    return [get(a) for a in jaxpr.outvars], deps


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


def _find_ops(t: TracedStep):
    """Classify vars and find each parameter's chain and core equations."""
    kind = {v: p for p, v in enumerate(t.param_vars)}      # int: param-only; "rt": runtime
    for v in list(t.hidden_in_vars) + list(t.x_vars):
        kind[v] = "rt"
    chain = {p: [] for p in range(t.n_params)}
    core_at: dict[int, int] = {}
    consumers: dict = {}
    for i, eqn in enumerate(t.eqns):
        for a in eqn.invars:
            if _is_var(a):
                consumers.setdefault(a, []).append(i)
        ks = [kind.get(a) if _is_var(a) else None for a in eqn.invars]
        ps = sorted({k for k in ks if isinstance(k, int)})
        if "rt" not in ks:
            if len(ps) > 1:
                raise UnsupportedWeightUseError(
                    f"parameters {t.param_paths[ps[0]]} and {t.param_paths[ps[1]]} are "
                    "combined before they meet the input",
                    primitive=eqn.primitive.name, path=t.param_paths[ps[0]],
                    source=source_of(eqn),
                    hint="apply each parameter leaf in its own weight op "
                         "(e.g. x @ U @ V instead of x @ (U @ V))")
            for v in eqn.outvars:   # integer outputs (e.g. sparse indices) carry no gradient
                kind[v] = ps[0] if ps and not _is_int(v) else None
            if ps:
                chain[ps[0]].append(i)
            continue
        for p in ps:
            if p in core_at:
                first = t.eqns[core_at[p]]
                raise WeightSharedError(
                    f"parameter {t.param_paths[p]} is consumed by two weight ops "
                    f"({first.primitive.name} at {source_of(first)} and "
                    f"{eqn.primitive.name} at {source_of(eqn)})",
                    primitive=eqn.primitive.name, path=t.param_paths[p], source=source_of(eqn),
                    hint="give each use its own parameter leaf, or apply the weight once "
                         "to a concatenated input")
            core_at[p] = i
        for v in eqn.outvars:
            kind[v] = "rt"
    return kind, chain, core_at, consumers


def _make_op(t, kind, chain, consumers, p, i, index) -> tuple[WeightOp, tuple]:
    """Identify the weight op whose core starts at equation ``i``."""
    eqn = t.eqns[i]
    name = eqn.primitive.name
    path = t.param_paths[p]
    w_pos = [j for j, a in enumerate(eqn.invars) if _is_var(a) and kind.get(a) == p]
    rt_pos = [j for j, a in enumerate(eqn.invars) if _is_var(a) and kind.get(a) == "rt"]
    others_const = all(not _is_var(a) or kind.get(a) is None
                       for j, a in enumerate(eqn.invars) if j not in w_pos + rt_pos)
    err = dict(primitive=name, path=path, source=source_of(eqn))
    if len(w_pos) != 1 or len(rt_pos) != 1 or not others_const:
        raise UnsupportedWeightUseError(
            f"parameter {path} meets runtime values in {name} in a way that is not a "
            "weight op (one weight operand, one input operand)", **err,
            hint="apply the weight as x @ W, W * x, + b, a convolution, or a sparse "
                 "segment_sum(W * x[pre], post)")
    weff, x = eqn.invars[w_pos[0]], eqn.invars[rt_pos[0]]
    core, y, passthrough, one_post = (i,), eqn.outvars[0], (), True
    if name == "dot_general":
        k = DENSE
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        xc, xb = (lc, lb) if rt_pos[0] == 0 else (rc, rb)
        free = [d for d in range(len(x.aval.shape)) if d not in tuple(xc) + tuple(xb)]
        one_post = math.prod(x.aval.shape[d] for d in free) == 1
    elif name == "conv_general_dilated":
        if w_pos[0] != 1:
            raise UnsupportedWeightUseError(
                f"parameter {path} is the input of a convolution, not its kernel", **err)
        k, one_post = CONV, False
    elif name == "bcoo_dot_general":
        if w_pos[0] != 0:
            raise UnsupportedWeightUseError(
                f"parameter {path} must be the data of the sparse matrix", **err)
        k = BCOO
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        free = [d for d in range(len(x.aval.shape)) if d not in tuple(rc) + tuple(rb)]
        one_post = math.prod(x.aval.shape[d] for d in free) == 1
    elif name == "mul":
        k = SCALE
        prod = t.eqns[_producer(t, x)] if _producer(t, x) is not None else None
        users = consumers.get(y, [])
        if (prod is not None and prod.primitive.name == "gather" and len(users) == 1
                and t.eqns[users[0]].primitive.name == "scatter-add"
                and t.eqns[users[0]].invars[2] is y):
            k, scatter = SPARSE, users[0]
            x = prod.invars[0]
            core, y = (_producer(t, prod.outvars[0]), i, scatter), t.eqns[scatter].outvars[0]
        else:
            passthrough = (x,)
            one_post = tuple(weff.aval.shape) == tuple(y.aval.shape)
    elif name in ("add", "add_any"):
        k, passthrough = BIAS, (x,)
        one_post = tuple(weff.aval.shape) == tuple(y.aval.shape)
        x = None
    else:
        raise UnsupportedWeightUseError(
            f"parameter {path} is used by {name}, which is not a recognised weight op", **err,
            hint="use parameters only as x @ W, W * x, + b, a convolution or a sparse "
                 "segment_sum(W * x[pre], post); parameters of the neuron dynamics "
                 "themselves (e.g. a learnable tau) are not supported yet")
    while True:   # size-preserving reshapes of y belong to the op (e.g. a conv's batch axis)
        users = consumers.get(y, [])
        nxt = t.eqns[users[0]] if len(users) == 1 else None
        if (nxt is None or nxt.primitive.name not in _RESHAPES or nxt.invars[0] is not y
                or math.prod(nxt.outvars[0].aval.shape) != math.prod(y.aval.shape)):
            break
        core, y = core + (users[0],), nxt.outvars[0]
    op = WeightOp(index=index, param=p, path=path, kind=k, chain=tuple(chain[p]),
                  core=core, param_var=t.param_vars[p], weff_var=weff, x_var=x, y_var=y,
                  source=source_of(eqn), one_post=one_post)
    return op, passthrough


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


def _producer(t, v):
    for i, eqn in enumerate(t.eqns):
        if any(o is v for o in eqn.outvars):
            return i
    return None


def _reaches_output(t: TracedStep, v) -> bool:
    live = {v}
    for eqn in t.eqns:
        if any(_is_var(a) and a in live for a in eqn.invars):
            live.update(eqn.outvars)
    return any(_is_var(o) and o in live for o in t.jaxpr.outvars)


def _is_int(v) -> bool:
    return not jnp.issubdtype(v.aval.dtype, jnp.inexact)


def _const_env(t: TracedStep, kind) -> dict:
    """Concrete values of the vars that depend on no runtime input and no
    parameter value (constants, indices); parameters stand in as zeros."""
    env = dict(zip(t.jaxpr.constvars, t.consts))
    env.update({v: jnp.zeros(v.aval.shape, v.aval.dtype) for v in t.param_vars})
    for eqn in t.eqns:
        if all(not _is_var(a) or a in env for a in eqn.invars) and all(
                kind.get(o) != "rt" for o in eqn.outvars):
            outs = _bind(eqn, [a.val if not _is_var(a) else env[a] for a in eqn.invars])
            env.update(zip(eqn.outvars, outs))
    return {v: c for v, c in env.items() if kind.get(v, None) is None}


def analyse(t: TracedStep, elementwise=frozenset()) -> Graph:
    """The graph IR of ``t``. ``elementwise``: names of further primitives
    (beyond jax's elementwise ones) that act element by element, e.g. a
    library's custom spike primitive."""
    kind, chain, core_at, consumers = _find_ops(t)
    for p in range(t.n_params):
        if p not in core_at and not _reaches_output(t, t.param_vars[p]):
            raise UnusedWeightError(
                f"parameter {t.param_paths[p]} reaches no hidden state and no output; "
                "its gradient would always be zero", path=t.param_paths[p],
                hint="remove it from the params pytree, or use it in the step")
    ops, cores = [], {}
    for p in sorted(core_at, key=lambda q: core_at[q]):
        op, passthrough = _make_op(t, kind, chain, consumers, p, core_at[p], len(ops))
        cores[op.core[-1]] = (op.index, passthrough)
        ops.append(op)

    in_deps = ([{} for _ in t.param_vars] + [{("h", j): ELEM} for j in range(t.n_hidden)]
               + [{("x", j): ELEM} for j in range(len(t.x_vars))])
    ew = ELEMENTWISE | frozenset(elementwise)
    outs, deps = propagate(t.jaxpr, in_deps, cores=cores, elementwise=ew)
    clocks = _autonomous(outs[:t.n_hidden])
    uf = _UnionFind(t.n_hidden)
    drives: dict[int, set] = {op.index: set() for op in ops}
    for j, d in enumerate(outs[:t.n_hidden]):
        for (src, idx), how in d.items():
            where = dict(primitive=how[0], source=how[1]) if how is not ELEM else {}
            if src == "h":
                if how is not ELEM and idx in clocks:
                    continue    # no gradient flows through a clock: any use of it is fine
                if how is not ELEM:
                    raise NonElementwiseCouplingError(
                        f"{t.hidden_paths[j]} depends on {t.hidden_paths[idx]} through "
                        f"{how[0]}, which mixes neurons outside a weight op",
                        path=t.hidden_paths[j], **where,
                        hint="couple neurons only through weight ops (x @ W, sparse "
                             "segment_sum); keep per-neuron dynamics elementwise. If "
                             f"{how[0]} acts element by element, declare it: "
                             f"StepModel(init, apply, elementwise={{'{how[0]}'}})")
                uf.union(j, idx)
            elif src == "y":
                if how is not ELEM:
                    raise NonElementwiseCouplingError(
                        f"{t.hidden_paths[j]} depends on the output of weight op "
                        f"{ops[idx].path} through {how[0]}, not elementwise",
                        path=t.hidden_paths[j], **where,
                        hint="feed a weight op's output into the neuron elementwise; its "
                             "shape must be the neuron population's shape")
                drives[idx].add(j)

    roots, groups, group_of = {}, [], {}
    for j in range(t.n_hidden):
        r = uf.find(j)
        if r not in roots:
            roots[r] = len(groups)
            groups.append(HiddenGroup(index=len(groups), leaves=[], paths=[], shape=None))
        g = groups[roots[r]]
        shape = tuple(t.hidden_in_vars[j].aval.shape)
        if g.shape is not None and g.shape != shape:
            raise NonElementwiseCouplingError(
                f"{t.hidden_paths[j]} {shape} is coupled to {g.paths[0]} {g.shape}: hidden "
                "states of one population must share one shape", path=t.hidden_paths[j])
        g.shape = shape
        g.leaves.append(j)
        g.paths.append(t.hidden_paths[j])
        group_of[j] = g.index

    for op in ops:
        op.groups = sorted({group_of[j] for j in drives[op.index]})
        for g in op.groups:
            groups[g].ops.append(op.index)
            if groups[g].shape != op.y_shape:
                raise NonElementwiseCouplingError(
                    f"weight op {op.path} produces {op.y_shape} but drives hidden group "
                    f"{groups[g].paths} of shape {groups[g].shape}", path=op.path,
                    source=op.source, hint="the op's output must have the population's shape")
        if not op.groups and not _reaches_output(t, op.y_var):
            raise UnusedWeightError(
                f"parameter {op.path} reaches no hidden state and no output; its gradient "
                "would always be zero", path=op.path, source=op.source)
        if op.x_var is not None:
            pre = set()
            for (src, idx) in deps.get(op.x_var, {}):
                if src == "h":
                    pre.add(f"G{group_of[idx]}")
                elif src == "x":
                    pre.add(t.x_paths[idx])
                elif src == "y":
                    pre.update(f"G{group_of[j]}" for j in drives[idx])
            op.pre = sorted(pre)
    return Graph(traced=t, ops=ops, groups=groups, group_of_leaf=group_of,
                 const_env=_const_env(t, kind), deps=deps)


def check_algorithm_supported(graph: Graph, algorithm: str):
    """D-RTRL (and e-prop, OSTL, which share its traces) keeps one trace
    entry per weight element and neuron state, which needs every weight
    element to drive exactly one neuron. OSTL is D-RTRL only on feed-forward
    layers: on a recurrent weight its trace needs the full layer Jacobian."""
    from transforms.errors import UnsupportedAlgorithmError
    if algorithm not in ("d_rtrl", "e_prop", "ostl"):
        return
    for op in graph.trained_ops():
        if not op.one_post:
            raise UnsupportedAlgorithmError(
                f"{algorithm} needs each weight element to drive one neuron, but {op.path} "
                f"({op.kind}, W {op.weff_shape} -> y {op.y_shape}) drives several",
                primitive=graph.traced.eqns[op.core[-1]].primitive.name, path=op.path,
                source=op.source, hint="use algorithm='es_d_rtrl' (or 'bptt') for this model")
        if algorithm == "ostl" and any(f"G{g}" in op.pre for g in op.groups):
            raise UnsupportedAlgorithmError(
                f"OSTL on the recurrent weight {op.path} needs the full Jacobian of its "
                "layer (O(N^3) memory), which is not implemented; D-RTRL is its "
                "per-neuron diagonal", path=op.path, source=op.source,
                hint="use algorithm='d_rtrl' (OSTL's diagonal) or 'bptt'")


__all__ = ["analyse", "check_algorithm_supported", "propagate", "CompileError"]
