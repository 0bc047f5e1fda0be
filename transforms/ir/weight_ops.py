"""Find the weight ops of a traced step: every place a parameter meets a
runtime value.

Every var is parameter-only (depends on one parameter leaf and constants),
constant, or runtime (depends on hidden state or input). Each equation that
meets a parameter-only var with a runtime var is one *use* of that parameter,
a weight op; the parameter-only equations before it form its ``chain``
(W -> W_eff). A parameter may have several uses (a threshold in the spike and
in the reset, a time constant read twice, tied weights ``R`` and ``R.T``):
each use gets its own trace, and their gradients add up.

How a use becomes a ``WeightOp`` is one entry per primitive in
``OP_RULES``: ``dot_general`` (dense), ``conv_general_dilated``,
``bcoo_dot_general``, ``mul`` (a scale, or gather -> mul -> scatter-add:
sparse), ``add`` (a bias), and every other elementwise primitive
(``y = f(x, W_eff)`` elementwise: a time constant, a threshold, a reset
value), whose tangent in W_eff is ``df/dW_eff`` times the change.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax.extend import core as jcore

from transforms.errors import UnsupportedWeightUseError
from transforms.ir.axis_rules import ELEMENTWISE
from transforms.ir.graph import BCOO, BIAS, CONV, DENSE, ELEMWISE, SCALE, SPARSE, WeightOp
from transforms.ir.trace import TracedStep, source_of

RESHAPES = {"reshape", "squeeze", "expand_dims"}


def is_var(a) -> bool:
    return not isinstance(a, jcore.Literal)


def is_int(v) -> bool:
    return not jnp.issubdtype(v.aval.dtype, jnp.inexact)


class Uses:
    """What ``find_uses`` learned: var kinds (int: parameter-only, "rt":
    runtime, None: constant), producers and consumers, and each parameter's
    uses in equation order."""

    def __init__(self, t: TracedStep):
        self.t = t
        self.kind = {v: p for p, v in enumerate(t.param_vars)}
        for v in list(t.hidden_in_vars) + list(t.x_vars):
            self.kind[v] = "rt"
        self.producer: dict = {}
        self.consumers: dict = {}
        self.uses: list[tuple[int, int]] = []      # (param, equation index)


def find_uses(t: TracedStep) -> Uses:
    u = Uses(t)
    for i, eqn in enumerate(t.eqns):
        for v in eqn.outvars:
            u.producer[v] = i
        for a in eqn.invars:
            if is_var(a):
                u.consumers.setdefault(a, []).append(i)
        ks = [u.kind.get(a) if is_var(a) else None for a in eqn.invars]
        ps = sorted({k for k in ks if isinstance(k, int)})
        if len(ps) > 1:
            raise UnsupportedWeightUseError(
                f"parameters {t.param_paths[ps[0]]} and {t.param_paths[ps[1]]} are "
                "combined in one equation", primitive=eqn.primitive.name,
                path=t.param_paths[ps[0]], source=source_of(eqn),
                hint="apply each parameter leaf in its own weight op "
                     "(e.g. x @ U @ V instead of x @ (U @ V))")
        if "rt" not in ks:
            for v in eqn.outvars:   # integer outputs (e.g. sparse indices) carry no gradient
                u.kind[v] = ps[0] if ps and not is_int(v) else None
            continue
        if ps:
            u.uses.append((ps[0], i))
        for v in eqn.outvars:
            u.kind[v] = "rt"
    return u


def chain_of(u: Uses, weff) -> tuple[int, ...]:
    """The parameter-only equations that compute ``weff``, in order."""
    need, seen = [weff], set()
    while need:
        v = need.pop()
        i = u.producer.get(v)
        if i is None or i in seen:
            continue
        seen.add(i)
        need.extend(a for a in u.t.eqns[i].invars if is_var(a) and isinstance(u.kind.get(a), int))
    return tuple(sorted(seen))


def _dense(u, eqn, w_pos, rt_pos, err):
    x = eqn.invars[rt_pos]
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    xc, xb = (lc, lb) if rt_pos == 0 else (rc, rb)
    free = [d for d in range(len(x.aval.shape)) if d not in tuple(xc) + tuple(xb)]
    return dict(kind=DENSE, one_post=math.prod(x.aval.shape[d] for d in free) == 1,
                x_parts=_concat_parts(u, eqn, w_pos, rt_pos))


def _concat_parts(u, eqn, w_pos, rt_pos):
    """(concatenate's equation index, W_eff's axis) when x = concat(parts)
    along an axis the product contracts: then x @ W = sum_i x_i @ W_i, and a
    derivative can skip the parts that carry no tangent."""
    x = eqn.invars[rt_pos]
    p = u.producer.get(x)
    cat = u.t.eqns[p] if p is not None else None
    if cat is None or cat.primitive.name != "concatenate" or list(eqn.invars).count(x) != 1:
        return None
    contract = eqn.params["dimension_numbers"][0]
    xc, wc = (contract[0], contract[1]) if rt_pos == 0 else (contract[1], contract[0])
    d = cat.params["dimension"]
    return (p, wc[list(xc).index(d)]) if d in xc else None


def _conv(u, eqn, w_pos, rt_pos, err):
    if w_pos != 1:
        raise UnsupportedWeightUseError(
            f"parameter {err['path']} is the input of a convolution, not its kernel", **err)
    return dict(kind=CONV, one_post=False)


def _bcoo(u, eqn, w_pos, rt_pos, err):
    if w_pos != 0:
        raise UnsupportedWeightUseError(
            f"parameter {err['path']} must be the data of the sparse matrix", **err)
    x = eqn.invars[rt_pos]
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    free = [d for d in range(len(x.aval.shape)) if d not in tuple(rc) + tuple(rb)]
    return dict(kind=BCOO, one_post=math.prod(x.aval.shape[d] for d in free) == 1)


def _mul(u, eqn, w_pos, rt_pos, err):
    """``W * x``, or the sparse pattern ``segment_sum(W * x[pre], post)``."""
    x, y = eqn.invars[rt_pos], eqn.outvars[0]
    p = u.producer.get(x)
    prod = u.t.eqns[p] if p is not None else None
    users = u.consumers.get(y, [])
    if (prod is not None and prod.primitive.name == "gather" and len(users) == 1
            and u.t.eqns[users[0]].primitive.name == "scatter-add"
            and u.t.eqns[users[0]].invars[2] is y):
        scatter = users[0]
        return dict(kind=SPARSE, x=prod.invars[0], core_extra=(p, scatter),
                    y=u.t.eqns[scatter].outvars[0])
    return dict(kind=SCALE, passthrough=(x,), weff_shape=tuple(y.aval.shape))


def _bias(u, eqn, w_pos, rt_pos, err):
    return dict(kind=BIAS, passthrough=(eqn.invars[rt_pos],), x=None,
                weff_shape=tuple(eqn.outvars[0].aval.shape))


def _elementwise(u, eqn, w_pos, rt_pos, err):
    rt = tuple(a for a in eqn.invars if is_var(a) and u.kind.get(a) == "rt")
    return dict(kind=ELEMWISE, passthrough=rt, inputs=rt,
                weff_shape=tuple(eqn.outvars[0].aval.shape))


OP_RULES = {name: _elementwise for name in ELEMENTWISE - {"convert_element_type", "copy",
                                                           "copy_p", "stop_gradient"}}
OP_RULES.update({"dot_general": _dense, "conv_general_dilated": _conv,
                 "bcoo_dot_general": _bcoo, "mul": _mul, "add": _bias, "add_any": _bias,
                 "select_n": _elementwise, "clamp": _elementwise})


def make_op(u: Uses, p: int, i: int, index: int, rules=OP_RULES,
            elementwise=frozenset()) -> tuple[WeightOp, tuple]:
    """The weight op of parameter ``p``'s use at equation ``i``, and the
    runtime vars whose dependencies pass through it unchanged (the x of an
    elementwise op)."""
    t = u.t
    eqn = t.eqns[i]
    name, path = eqn.primitive.name, t.param_paths[p]
    w_pos = [j for j, a in enumerate(eqn.invars) if is_var(a) and u.kind.get(a) == p]
    rt_pos = [j for j, a in enumerate(eqn.invars) if is_var(a) and u.kind.get(a) == "rt"]
    others_const = all(not is_var(a) or u.kind.get(a) is None
                       for j, a in enumerate(eqn.invars) if j not in w_pos + rt_pos)
    err = dict(primitive=name, path=path, source=source_of(eqn))
    rule = rules.get(name) or (_elementwise if name in elementwise else None)
    several = rule is _elementwise and len(rt_pos) > 1    # f(x1, x2, W): e.g. where(s, W, v)
    if len(w_pos) != 1 or not rt_pos or (len(rt_pos) > 1 and not several) or not others_const:
        raise UnsupportedWeightUseError(
            f"parameter {path} meets runtime values in {name} in a way that is not a "
            "weight op (one weight operand, one input operand)", **err,
            hint="apply the weight as x @ W, W * x, + b, a convolution, an elementwise "
                 "function f(x, W), or a sparse segment_sum(W * x[pre], post)")
    if rule is None:
        raise UnsupportedWeightUseError(
            f"parameter {path} is used by {name}, which is not a recognised weight op", **err,
            hint="use parameters as x @ W, W * x, + b, a convolution, an elementwise "
                 "function f(x, W) or a sparse segment_sum(W * x[pre], post); or compute "
                 f"{name} on the parameter alone before it meets the input")
    complex_at = [v for v in (eqn.invars[w_pos[0]], eqn.outvars[0])
                  if jnp.issubdtype(v.aval.dtype, jnp.complexfloating)]
    if complex_at:
        raise UnsupportedWeightUseError(
            f"parameter {path} reaches the step as a complex weight op ({name} on "
            f"{complex_at[0].aval.dtype}); the online learners' traces take real weight ops "
            "(complex hidden states are fine)", **err,
            hint="apply the real parameters to real values (e.g. z * exp(-b * dt) * "
                 "(cos(w * dt) + 1j * sin(w * dt)) with w applied as a real scale), or use "
                 "algorithm='bptt'")
    info = rule(u, eqn, w_pos[0], rt_pos[0], err)
    weff = eqn.invars[w_pos[0]]
    x = info.get("x", eqn.invars[rt_pos[0]])
    core = tuple(sorted((i,) + tuple(c for c in info.get("core_extra", ()) if c is not None)))
    y = info.get("y", eqn.outvars[0])
    while True:   # size-preserving reshapes of y belong to the op (e.g. a conv's batch axis)
        users = u.consumers.get(y, [])
        nxt = t.eqns[users[0]] if len(users) == 1 else None
        if (nxt is None or nxt.primitive.name not in RESHAPES or nxt.invars[0] is not y
                or math.prod(nxt.outvars[0].aval.shape) != math.prod(y.aval.shape)):
            break
        core, y = core + (users[0],), nxt.outvars[0]
    op = WeightOp(index=index, param=p, path=path, kind=info["kind"], chain=chain_of(u, weff),
                  core=core, param_var=t.param_vars[p], weff_var=weff, x_var=x, y_var=y,
                  source=source_of(eqn), one_post=info.get("one_post", True),
                  bcast_shape=info.get("weff_shape"), inputs=info.get("inputs", ()),
                  x_parts=info.get("x_parts") if len(core) == 1 else None)
    return op, info.get("passthrough", ())


def find_ops(t: TracedStep, elementwise=frozenset()):
    """All weight ops of ``t`` in equation order, with their passthrough vars."""
    u = find_uses(t)
    ops, passthrough = [], {}
    for p, i in u.uses:
        op, pt = make_op(u, p, i, len(ops), elementwise=elementwise)
        ops.append(op)
        passthrough[op.index] = pt
    return u, ops, passthrough
