"""ES-D-RTRL: D-RTRL with each trace factorised into an input and a neuron part.

Per trained op (x -> y = core(x, W_eff)) and driven group g:

    ex_t = a ex_{t-1} + x_t                               (shape of x)
    ef_t = a D_t o ef_{t-1} + (1 - a) Df_t                (K x shape of y)
    E_t ~ (ef_t (x) ex_t) / c_t,   c_t = 1 - a^(n_t)

with n_t the number of trace updates so far (the warm-up bias correction is
exact per time step, however many steps one call runs). A bias is an op on
the constant input 1 and keeps its own ex, so its gradient is not scaled by
(1 - a). The contraction sum_b L^T E is the VJP of the batched core with
respect to W_eff at x = ex: one matmul (or convolution) per op and step.
Memory per sample: |x| + K |y| per op.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from transforms.graph import Graph


def init(graph: Graph, batch: int, dtype, decay: float):
    ops = graph.trained_ops()
    return {
        "x": [jnp.zeros((batch,) + op.x_shape, dtype) for op in ops],
        "f": [[jnp.zeros((batch, graph.groups[g].k) + graph.groups[g].shape, dtype)
               for g in op.groups] for op in ops],
        "n": jnp.zeros((), jnp.int32),
    }


def contract(graph: Graph, traces, signal, decay: float):
    """sum_t-term of the gradient: per op, d/dW_eff summed over the batch."""
    n = traces["n"]
    dtype = traces["x"][0].dtype if traces["x"] else jnp.float32
    c = 1.0 - jnp.asarray(decay, dtype) ** n.astype(dtype)
    scale = jnp.where(n > 0, 1.0 / jnp.where(n > 0, c, 1.0), 0.0)
    grads = []
    for i, op in enumerate(graph.trained_ops()):
        ex = traces["x"][i]
        cot = sum(jnp.sum(signal[g] * f, axis=1) for g, f in zip(op.groups, traces["f"][i]))
        cot = cot * scale.astype(cot.dtype)
        zero_w = jnp.zeros(op.weff_shape, ex.dtype)
        _, pull = jax.vjp(lambda w, op=op, ex=ex: jax.vmap(lambda xx: graph.core(op, xx, w))(ex), zero_w)
        grads.append(pull(cot)[0])
    return grads


def advance(graph: Graph, traces, D, Df, xs, decay: float):
    a = decay
    new_x = [a * ex + x for ex, x in zip(traces["x"], xs)]
    new_f = []
    for i, op in enumerate(graph.trained_ops()):
        fs = []
        for f, g, df in zip(traces["f"][i], op.groups, Df[i]):
            # D[g]: (B, K, K, *S); f: (B, K, *S)
            fs.append(a * jnp.sum(D[g] * f[:, None], axis=2) + (1.0 - a) * df)
        new_f.append(fs)
    return {"x": new_x, "f": new_f, "n": traces["n"] + 1}
