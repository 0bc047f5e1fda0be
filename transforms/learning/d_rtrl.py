"""D-RTRL: eligibility traces with the per-neuron diagonal Jacobian.

Per trained op y = core(x, W_eff) and each hidden leaf k it drives, per
sample, the derivative of each neuron's state in the weights it reads:

    E_t[k] = sum_k' D_t[k, k'] o E_{t-1}[k'] + Df_t[k] o dy/dW_eff

An op with a patch form (dense, convolution: y[n, o] = P(x)[n, :] . W2[:, o])
keeps one entry per neuron and patch element, (*y, B, *J), with
dy[n, o]/dW2[:, o] = P(x)[n, :]; this holds where a weight element feeds
several neurons (a kernel shared over pixels), so D-RTRL stays exact there.
Every other op (elementwise scale, bias, sparse segment_sum, BCOO) has each
W_eff element feeding one neuron post(e) and keeps (B, *W_eff): ``spread``
maps a per-neuron q to W_eff's shape, e -> q(post(e)), and ``inject`` is the
VJP of the core at x with cotangent Df. Gradient term: sum_b sum_k
spread(L[k]) o E[k], summed over the positions sharing a weight.
Memory per sample: K |W| x (neurons sharing a weight element) per op (plus
one more per readout path: a leaky readout's filtered copy
X_t = kappa X_{t-1} + dx_o/dW); ``trace_dtype`` (e.g. bfloat16) halves it,
arithmetic stays in the parameters' dtype.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from transforms.ir.graph import Graph
from transforms.ir.patch_forms import patch_form
from transforms.learning.signals import jacobians, op_slots, weight_grads


class DRTRLTraces(NamedTuple):
    E: dict      # op index -> per driven state slot: d h / d W_eff
    X: list      # per readout path: the trace filtered by the readout's leak


def batch_axes(graph: Graph) -> DRTRLTraces:
    """Where each trace keeps the batch (``init``'s structure, ints)."""
    return DRTRLTraces(
        E={op.index: [_Layout(graph, op).batch_axis] * len(op_slots(graph, op))
           for op in graph.trained_ops()},
        X=[_Layout(graph, graph.ops[p.op]).batch_axis for p in graph.readout_paths])


def init(graph: Graph, batch: int, dtype, trace_dtype=None) -> DRTRLTraces:
    tdt = trace_dtype or dtype
    return DRTRLTraces(
        E={op.index: [jnp.zeros(_Layout(graph, op).shape(batch), tdt)
                      for _ in op_slots(graph, op)] for op in graph.trained_ops()},
        X=[jnp.zeros(_Layout(graph, graph.ops[p.op]).shape(batch), tdt)
           for p in graph.readout_paths])


def _maps(graph: Graph, op, dtype):
    """Per-sample ``spread(q)`` and ``inject(x, q)`` of an op without a patch
    form (its traces in W_eff's shape): VJPs of the core."""
    shape = op.weff_shape

    def pull(x, q):
        _, vjp = jax.vjp(lambda w: graph.core(op, x, w), jnp.zeros(shape, dtype))
        return vjp(q)[0]
    ones = jnp.ones(op.x_shape, dtype)
    return (lambda q: pull(ones, q)), pull


class _Layout:
    """How one op's traces are stored and combined with per-neuron
    quantities q of shape (B, *y). An op with a patch form (dense,
    convolution; ``ir.patch_forms``) stores (*y, B, *J), neuron axes first:
    spread and inject are broadcasts, and the contraction over the batch is
    a broadcast product and a sum (XLA's batched matrix-vector product for
    it measured 1.5x slower on CPU at 400 neurons). A weight shared by
    several neurons (a kernel over pixels, a dense layer over positions)
    stays exact. Other ops store (B, *W_eff) and use the per-sample spread /
    inject VJPs under vmap."""

    def __init__(self, graph: Graph, op):
        self.graph, self.op, self.form = graph, op, patch_form(graph, op)

    @property
    def batch_axis(self) -> int:
        return len(self.form.yshape) if self.form else 0

    def shape(self, batch):
        f = self.form
        return f.yshape + (batch,) + f.jshape if f else (batch,) + self.op.weff_shape

    def spread(self, q):
        f = self.form
        if f:
            ny = len(f.yshape)
            q = jnp.moveaxis(q.reshape(q.shape[:1] + f.yshape), 0, ny)
            return q.reshape(q.shape + (1,) * len(f.jshape))
        return jax.vmap(_maps(self.graph, self.op, q.dtype)[0])(q)

    def inject(self, x, q):
        f = self.form
        if f:
            return self.spread(q) * jnp.moveaxis(f.patches(x.astype(q.dtype)), 0, len(f.yshape))
        return jax.vmap(_maps(self.graph, self.op, q.dtype)[1])(x, q)

    def contract(self, L, E):
        """sum_b spread(L)_b o E_b, in W_eff's layout."""
        E = E.astype(L.dtype)
        f = self.form
        if not f:
            return jnp.sum(self.spread(L) * E, axis=0)
        ny = len(f.yshape)
        summed = (ny,) + tuple(a for a in range(ny) if a not in f.w_axes)
        return f.to_weff(jnp.sum(self.spread(L) * E, axis=summed))


def contract(graph: Graph, traces, signal, readout_signal, xs, dys):
    """This step's gradient per trained op: the immediate term
    sum_b d<dy_b, core(x_b, W)>/dW plus sum_b sum_k spread(L[k]) o E[k] and
    spread(Lx) o X for the op's readout paths."""
    grads = weight_grads(graph, xs, dys)
    for op in graph.trained_ops():
        lay = _Layout(graph, op)
        pairs = list(zip([signal[j] for j in op_slots(graph, op)], traces.E[op.index])) + [
            (lx, X) for p, lx, X in zip(graph.readout_paths, readout_signal, traces.X)
            if p.op == op.index]
        grads[op.index] = grads[op.index] + sum(lay.contract(L, E) for L, E in pairs)
    return grads


def advance(graph: Graph, traces, per_sample, xs):
    """Batched trace update with the per-sample Jacobians of the cut step:
    E[k] = sum_k' spread(D[k, k']) o E[k'] + inject(x, Df[k]); a readout
    path's copy X = kappa X + sum_k' spread(dx_o/dh_k') o E[k'] + inject(x, dx_o/dy)."""
    D, Df, Jh, Jy = per_sample(lambda tr, lin, h, ys, xx: jacobians(graph, lin, h, ys), {})
    new_X = []
    for n, p in enumerate(graph.readout_paths):
        lay = _Layout(graph, graph.ops[p.op])
        E = dict(zip(op_slots(graph, graph.ops[p.op]), traces.E[p.op]))
        dtype = Jy[n].dtype
        x_new = (p.kappa * traces.X[n].astype(dtype) + lay.inject(xs[p.op], Jy[n])
                 + sum(lay.spread(Jh[n][jj]) * E[jj].astype(dtype) for jj in Jh[n]))
        new_X.append(x_new.astype(traces.X[n].dtype))
    new = {}
    for op in graph.trained_ops():
        lay = _Layout(graph, op)
        leaves = op_slots(graph, op)
        E = dict(zip(leaves, traces.E[op.index]))
        out = []
        for j, df in zip(leaves, Df[op.index]):
            group = graph.groups[graph.group_of_slot[j]].slots
            e = sum(lay.spread(D[(j, jj)]) * E[jj].astype(df.dtype) for jj in group)
            out.append((e + lay.inject(xs[op.index], df)).astype(E[j].dtype))
        new[op.index] = out
    return DRTRLTraces(new, new_X)
