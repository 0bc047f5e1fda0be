"""D-RTRL: eligibility traces with the per-neuron diagonal Jacobian.

Per trained op (y = core(x, W_eff), every W_eff element e feeding one neuron
post(e)) and each hidden leaf k it drives, a trace of the shape of W_eff per
sample:

    E_t[k] = sum_k' D_t[k, k'](post) o E_{t-1}[k'] + Df_t[k](post) o dy(post)/dW_eff

``spread`` maps a per-neuron vector q to W_eff's shape, e -> q(post(e)), and
``inject`` gives Df(post) o dy/dW = the VJP of the core at x with cotangent Df.
For dense ops both are broadcasts; for the others (elementwise scale, bias,
sparse segment_sum, BCOO) they are VJPs of the core (at x = 1 for spread,
where every coefficient is 1). Gradient term: sum_b sum_k spread(L[k]) o E[k].
Memory per sample: K |W| per op (plus |W| per readout path: a leaky readout's
filtered copy X_t = kappa X_{t-1} + dx_o/dW); ``trace_dtype`` (e.g. bfloat16)
halves it, arithmetic stays in the parameters' dtype.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from transforms.ir.graph import DENSE, Graph
from transforms.learning.signals import jacobians, op_slots, weight_grads


class DRTRLTraces(NamedTuple):
    E: list      # per trained op, per driven state slot: d h / d W_eff
    X: list      # per readout path: the trace filtered by the readout's leak


def init(graph: Graph, batch: int, dtype, trace_dtype=None) -> DRTRLTraces:
    tdt = trace_dtype or dtype
    ops = graph.trained_ops()
    return DRTRLTraces(
        E=[[jnp.zeros(_Layout(graph, op).shape(batch), tdt) for _ in op_slots(graph, op)]
           for op in ops],
        X=[jnp.zeros(_Layout(graph, ops[p.op]).shape(batch), tdt) for p in graph.readout_paths])


def _dense_layout(graph: Graph, op):
    """(x permutation, W dims of x, W free dims) for a plain dense op whose
    input has only contracted axes; None otherwise."""
    if op.kind != DENSE or len(op.core) != 1:
        return None
    eqn = graph.traced.eqns[op.core[0]]
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    xc, wc = (lc, rc) if eqn.invars[0] is op.x_var else (rc, lc)
    if lb or rb or len(op.x_shape) != len(xc):
        return None
    pairs = sorted(zip(wc, xc))
    w_free = tuple(d for d in range(len(op.weff_shape)) if d not in wc)
    return tuple(xd for _, xd in pairs), tuple(wd for wd, _ in pairs), w_free


def _maps(graph: Graph, op, dtype):
    """Per-sample ``spread(q)`` and ``inject(x, q)`` for one op."""
    layout = _dense_layout(graph, op)
    shape = op.weff_shape
    if layout is not None:
        x_perm, x_dims, w_free = layout
        spread = lambda q: lax.broadcast_in_dim(q, shape, w_free)
        inject = lambda x, q: (lax.broadcast_in_dim(jnp.transpose(x, x_perm), shape, x_dims)
                               * spread(q))
        return spread, inject

    def pull(x, q):
        _, vjp = jax.vjp(lambda w: graph.core(op, x, w), jnp.zeros(shape, dtype))
        return vjp(q)[0]
    ones = jnp.ones(op.x_shape, dtype)
    return (lambda q: pull(ones, q)), pull


class _Layout:
    """How one op's traces are stored (batched) and combined with per-neuron
    quantities q of shape (B, *y). Dense ops store (*y, B, *x), neuron axis
    first: the contraction over the batch is then a contiguous batched
    matrix-vector product. Other ops store (B, *W_eff) and use the per-sample
    spread / inject VJPs under vmap."""

    def __init__(self, graph: Graph, op):
        self.graph, self.op, self.dense = graph, op, _dense_layout(graph, op)

    def shape(self, batch):
        op = self.op
        return (op.y_shape + (batch,) + op.x_shape) if self.dense else (batch,) + op.weff_shape

    def spread(self, q):
        if self.dense:
            ny = len(self.op.y_shape)
            return jnp.moveaxis(q, 0, ny).reshape(q.shape[1:] + (q.shape[0],)
                                                  + (1,) * len(self.op.x_shape))
        return jax.vmap(_maps(self.graph, self.op, q.dtype)[0])(q)

    def inject(self, x, q):
        if self.dense:
            ny = len(self.op.y_shape)
            return self.spread(q) * x.astype(q.dtype).reshape((1,) * ny + x.shape)
        return jax.vmap(_maps(self.graph, self.op, q.dtype)[1])(x, q)

    def contract(self, L, E):
        """sum_b spread(L)_b o E_b, in W_eff's layout."""
        E = E.astype(L.dtype)
        if not self.dense:
            return jnp.sum(self.spread(L) * E, axis=0)
        x_perm, x_dims, w_free = self.dense
        ny, nx = len(self.op.y_shape), len(self.op.x_shape)
        y, x = _letters(ny, skip="z"), _letters(ny + nx, skip="z")[ny:]
        g = jnp.einsum(f"z{''.join(y)},{''.join(y)}z{''.join(x)}->{''.join(y + x)}", L, E)
        where = {d: k for k, d in enumerate(w_free)}
        where.update({d: ny + xd for d, xd in zip(x_dims, x_perm)})
        return jnp.transpose(g, [where[d] for d in range(len(self.op.weff_shape))])


def _letters(n, skip=""):
    return [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in skip][:n]


def contract(graph: Graph, traces, signal, readout_signal, xs, dys):
    """This step's gradient per trained op: the immediate term
    sum_b d<dy_b, core(x_b, W)>/dW plus sum_b sum_k spread(L[k]) o E[k] and
    spread(Lx) o X for the op's readout paths."""
    grads = weight_grads(graph, xs, dys)
    for i, op in enumerate(graph.trained_ops()):
        lay = _Layout(graph, op)
        pairs = list(zip([signal[j] for j in op_slots(graph, op)], traces.E[i])) + [
            (lx, X) for p, lx, X in zip(graph.readout_paths, readout_signal, traces.X)
            if p.op == i]
        grads[i] = grads[i] + sum(lay.contract(L, E) for L, E in pairs)
    return grads


def advance(graph: Graph, traces, per_sample, xs):
    """Batched trace update with the per-sample Jacobians of the cut step:
    E[k] = sum_k' spread(D[k, k']) o E[k'] + inject(x, Df[k]); a readout
    path's copy X = kappa X + sum_k' spread(dx_o/dh_k') o E[k'] + inject(x, dx_o/dy)."""
    D, Df, Jh, Jy = per_sample(lambda tr, lin, h, ys, xx: jacobians(graph, lin, h, ys), {})
    ops = graph.trained_ops()
    new_X = []
    for n, p in enumerate(graph.readout_paths):
        lay = _Layout(graph, ops[p.op])
        E = dict(zip(op_slots(graph, ops[p.op]), traces.E[p.op]))
        dtype = Jy[n].dtype
        x_new = (p.kappa * traces.X[n].astype(dtype) + lay.inject(xs[p.op], Jy[n])
                 + sum(lay.spread(Jh[n][jj]) * E[jj].astype(dtype) for jj in Jh[n]))
        new_X.append(x_new.astype(traces.X[n].dtype))
    new = []
    for i, op in enumerate(ops):
        lay = _Layout(graph, op)
        leaves = op_slots(graph, op)
        E = dict(zip(leaves, traces.E[i]))
        out = []
        for j, df in zip(leaves, Df[i]):
            group = graph.groups[graph.group_of_slot[j]].slots
            e = sum(lay.spread(D[(j, jj)]) * E[jj].astype(df.dtype) for jj in group)
            out.append((e + lay.inject(xs[i], df)).astype(E[j].dtype))
        new.append(out)
    return DRTRLTraces(new, new_X)
