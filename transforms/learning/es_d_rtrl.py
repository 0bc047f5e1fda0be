"""ES-D-RTRL: D-RTRL with each trace factorised into an input and a neuron part.

Per trained op (x -> y = core(x, W_eff)) and each hidden leaf j it drives:

    ex_t = a ex_{t-1} + x_t                               (shape of x)
    ef_t = a D_t ef_{t-1} + (1 - a) Df_t                  (shape of the neuron group)
    E_t ~ (ef_t (x) ex_t) / c_t,   c_t = 1 - a^(n_t)

with n_t the number of trace updates so far (the warm-up correction is exact
per time step, however many steps one call runs). ``a D ef + (1-a) Df`` is one
JVP of the cut step, tangent ``a ef`` on the hidden state and ``1 - a`` on the
op's output, so D is never formed. A bias is an op on the constant input 1 and
keeps its own ex, so its gradient is not scaled by (1 - a). Each step's
weight gradient is one VJP of the batched core (a matmul for dense ops) on
stacked factors: x_t with d l/d y_t, and ex_{t-1} with (L o ef) / c.
Memory per sample: |x| + K |y| per op.
An op driving a linear group (r_t = kappa r_{t-1} + c y_t, ``linear_groups``)
has the exact factorised trace E_t = c (x filtered by kappa): its ex uses
kappa, its neuron factor is c, and no warm-up correction applies. Linear leaky
readouts (``readout_paths``) add a filtered neuron trace
xi_t = kappa xi_{t-1} + d x_o/d(W) in the same factorised form.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from transforms.ir.graph import Graph
from transforms.learning.signals import op_slots, op_rounds, weight_grads


class ESTraces(NamedTuple):
    x: dict            # op index -> the input trace ex, (B, *x)
    f: dict            # op index -> per driven slot: the neuron trace ef, (B, *neurons)
    xi: list           # per readout path: the filtered neuron trace, (B, *neurons)
    n: jax.Array       # trace updates so far (warm-up correction)


def init(graph: Graph, batch: int, dtype) -> ESTraces:
    ops = graph.trained_ops()
    return ESTraces(
        x={op.index: jnp.zeros((batch,) + op.x_shape, dtype) for op in ops},
        f={op.index: [jnp.zeros((batch,) + graph.groups[graph.group_of_slot[j]].shape, dtype)
                      for j in op_slots(graph, op)] for op in ops},
        xi=[jnp.zeros((batch,) + graph.groups[p.group].shape, dtype)
            for p in graph.readout_paths],
        n=jnp.zeros((), jnp.int32))


def batch_axes(graph: Graph) -> ESTraces:
    """Where each trace keeps the batch: axis 0; the counter is shared."""
    ops = graph.trained_ops()
    return ESTraces(x={op.index: 0 for op in ops},
                    f={op.index: [0] * len(op_slots(graph, op)) for op in ops},
                    xi=[0] * len(graph.readout_paths), n=None)


def linear_op(graph: Graph, op):
    """(kappa, c) when the trained ``op`` drives exactly one linear group."""
    if len(op.groups) == 1 and op.groups[0] in graph.linear_groups:
        lg = graph.linear_groups[op.groups[0]]
        return lg.kappa, lg.coeff[op.index]
    return None


def input_decays(graph: Graph, decay: float) -> dict[int, float]:
    """Per trained op index, the decay of its input trace ex: kappa for an op
    driving a linear group, else the algorithm's decay."""
    return {op.index: lin[0] if (lin := linear_op(graph, op)) else decay
            for op in graph.trained_ops()}


def path_weights(graph: Graph, traces, decay: float):
    """Per readout path through a spiking layer (``through``): the neuron
    factor ef / c of the op driving that layer, per state slot, or for a path
    on into a readout the readout path's xi / c (batched); None for the
    other paths."""
    n = traces.n
    dtype = jax.tree_util.tree_leaves(traces.f)[0].dtype if traces.f else jnp.float32
    c = 1.0 - jnp.asarray(decay, dtype) ** n.astype(dtype)
    scale = jnp.where(n > 0, 1.0 / jnp.where(n > 0, c, 1.0), 0.0).astype(dtype)
    out = []
    for p in graph.readout_paths:
        if not p.through:
            out.append(None)
            continue
        if p.via is not None:           # the readout path's filtered trace xi / c
            out.append([scale * traces.xi[p.via]])
            continue
        f = dict(zip(op_slots(graph, graph.ops[p.readout_op]), traces.f[p.readout_op]))
        out.append([scale * f[j] for j in graph.groups[p.readout_group].slots])
    return out


def neuron_cotangents(graph: Graph, traces, signal, decay: float, readout_signal):
    """Per trained op index u_t (shape of y, batched): the trace term of the
    gradient is sum_b ex_{t-1} (x) u_t, with u = (L o ef + Lx o xi) / c, or
    c_o L for an op driving a linear group."""
    n = traces.n
    ref = jax.tree_util.tree_leaves(signal)[0]
    dtype = jnp.real(ref).dtype
    c = 1.0 - jnp.asarray(decay, dtype) ** n.astype(dtype)
    scale = jnp.where(n > 0, 1.0 / jnp.where(n > 0, c, 1.0), 0.0).astype(dtype)
    us = {}
    for op in graph.trained_ops():
        k = op.index
        u = jnp.zeros(ref.shape[:1] + op.y_shape, dtype) + scale * sum(
            (lx * xi for p, lx, xi in zip(graph.readout_paths, readout_signal, traces.xi)
             if p.op == k), 0.0)
        lin = linear_op(graph, op)
        if lin is not None:        # exact: E = c ex, ex filtered by kappa
            u = u + lin[1] * signal[op_slots(graph, op)[0]]
        else:
            u = u + scale * sum(signal[j] * f for j, f in zip(op_slots(graph, op), traces.f[k]))
        us[k] = u
    return us


def contract(graph: Graph, traces, signal, decay: float, readout_signal, xs, dys):
    """This step's gradient per trained op: sum_b x_t (x) dy_t + ex_{t-1} (x) u_t,
    one contraction on stacked factors."""
    us = neuron_cotangents(graph, traces, signal, decay, readout_signal)
    X = {k: jnp.concatenate([xs[k].astype(ex.dtype), ex]) for k, ex in traces.x.items()}
    Y = {k: jnp.concatenate([dys[k], u]) for k, u in us.items()}
    return weight_grads(graph, X, Y)


def window_factors(graph: Graph, decay: float, ex0, xs, dys, us):
    """Stacked factors of a window of k steps (inputs stacked (k, B, ...),
    ex0 the input traces before its first step). Since
    ex_{t-1} = a^t ex0 + sum_{s<t} a^(t-1-s) x_s,

        sum_t x_t (x) dy_t + ex_{t-1} (x) u_t
          = ex0 (x) sum_t a^t u_t + sum_s x_s (x) (dy_s + sum_{t>s} a^(t-1-s) u_t),

    so one contraction over (k + 1) B rows gives the window's gradient."""
    X, Y = {}, {}
    for k, a in input_decays(graph, decay).items():
        e0, x, dy, u = ex0[k], xs[k], dys[k], us[k]
        n = u.shape[0]
        # rows 0..n-1: ubar_s = sum_{t>s} a^(t-1-s) u_t; row n: sum_t a^t u_t
        t, s_ = jnp.arange(n)[None, :], jnp.arange(n)[:, None]
        back = jnp.where(t > s_, a ** jnp.maximum(t - 1 - s_, 0).astype(u.dtype), 0.0)
        mix = jnp.concatenate([back, (a ** jnp.arange(n, dtype=u.dtype))[None]]).astype(u.dtype)
        filtered = jnp.tensordot(mix, u, axes=1)
        flat = lambda v: v.reshape((-1,) + v.shape[2:])
        X[k] = jnp.concatenate([flat(x).astype(e0.dtype), e0])
        Y[k] = jnp.concatenate([flat(dy + filtered[:n]), filtered[n]])
    return X, Y


def advance_one(graph: Graph, traces, lin, hidden, ys, xs, decay: float):
    """One sample's trace update (``traces`` without the counter, n = None)."""
    a = decay
    zeros_h = [jnp.zeros_like(h) for h in hidden]
    new_f = {}
    new_xi = list(traces.xi)
    for members in op_rounds(graph):
        dh = list(zeros_h)
        for k in members:
            for j, f in zip(op_slots(graph, graph.ops[k]), traces.f[k]):
                dh[j] = a * f
        ddy = {op.index: jnp.full(op.y_shape, 1.0 - a if op.index in members else 0.0,
                                  op.y_var.aval.dtype) for op in graph.trained_ops()}
        out, extra = lin(dh, ddy)
        for k in members:
            new_f[k] = [out[j] for j in op_slots(graph, graph.ops[k])]
        for n, p in enumerate(graph.readout_paths):
            if p.op in members:       # xi = kappa xi + (a Jx_h ef + (1 - a) Jx_y)
                e = extra[n] if p.x_slice is None else extra[n][p.x_slice[0]:p.x_slice[1]]
                new_xi[n] = p.kappa * traces.xi[n] + e
    new_x = {k: d * traces.x[k] + xs[k] for k, d in input_decays(graph, a).items()}
    return ESTraces(new_x, new_f, new_xi, None)


def advance(graph: Graph, traces, per_sample, decay: float, xs=None):
    """Batched update; ``per_sample(fn, traces_without_counter)`` vmaps
    ``fn(traces, lin, hidden, ys, xs)`` over the batch."""
    new = per_sample(lambda tr, lin, h, ys, xs: advance_one(graph, tr, lin, h, ys, xs, decay),
                     traces._replace(n=None))
    return new._replace(n=traces.n + 1)
