"""D-RTRL: exact per-neuron-diagonal eligibility traces.

Per trained op (y = core(x, W_eff), every W_eff element e feeding one neuron
post(e)) and driven group g, a trace of the shape K x W_eff per sample:

    E_t[k] = sum_k' D_t[k, k'](post) o E_{t-1}[k'] + Df_t[k](post) o d y(post)/d W_eff

The second term is the VJP of the core at x_t with cotangent Df_t[k]; the
gather q -> q(post(e)) is the VJP at x = 1 (coefficients are 1 for a matmul,
an elementwise scale, a bias or a sparse segment_sum). Gradient term:
sum_b sum_k L[k](post) o E[k]. Memory per sample: K |W| per op.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from transforms.graph import Graph


def init(graph: Graph, batch: int, dtype, decay=None):
    return {"E": [[jnp.zeros((batch, graph.groups[g].k) + op.weff_shape, dtype)
                   for g in op.groups] for op in graph.trained_ops()]}


def _pullback(graph, op, x, dtype):
    """q (shape of y) -> d<q, core(x, W)>/dW (shape of W_eff)."""
    _, pull = jax.vjp(lambda w: graph.core(op, x, w), jnp.zeros(op.weff_shape, dtype))
    return lambda q: pull(q)[0]


def contract(graph: Graph, traces, signal, decay=None):
    grads = []
    for i, op in enumerate(graph.trained_ops()):
        def one(E_list, L_list, op=op):
            spread = _pullback(graph, op, jnp.ones(op.x_shape, E_list[0].dtype), E_list[0].dtype)
            return sum(spread(L[k]) * E[k] for E, L in zip(E_list, L_list) for k in range(E.shape[0]))
        per = jax.vmap(one)(traces["E"][i], [signal[g] for g in op.groups])
        grads.append(jnp.sum(per, axis=0))
    return grads


def advance(graph: Graph, traces, D, Df, xs, decay=None):
    new = []
    for i, op in enumerate(graph.trained_ops()):
        def one(E_list, D_list, Df_list, x, op=op):
            dtype = E_list[0].dtype
            spread = _pullback(graph, op, jnp.ones(op.x_shape, dtype), dtype)
            inject = _pullback(graph, op, x, dtype)
            out = []
            for E, Dg, df in zip(E_list, D_list, Df_list):
                K = E.shape[0]
                out.append(jnp.stack([
                    sum(spread(Dg[k, kk]) * E[kk] for kk in range(K)) + inject(df[k])
                    for k in range(K)]))
            return out
        new.append(jax.vmap(one)(traces["E"][i], [D[g] for g in op.groups], Df[i], xs[i]))
    return {"E": new}
