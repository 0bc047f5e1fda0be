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

import jax
import jax.numpy as jnp
from jax import lax

from transforms.graph import DENSE, Graph
from transforms.online import jacobians, op_leaves, weight_grads


def init(graph: Graph, batch: int, dtype, decay=None, trace_dtype=None):
    tdt = trace_dtype or dtype
    ops = graph.trained_ops()
    return {"E": [[jnp.zeros((batch,) + op.weff_shape, tdt) for _ in op_leaves(graph, op)]
                  for op in ops],
            "X": [jnp.zeros((batch,) + ops[p.op].weff_shape, tdt) for p in graph.readout_paths]}


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


def _letters(n, skip=""):
    return [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in skip][:n]


def contract(graph: Graph, traces, signal, decay, readout_signal, xs, dys):
    """This step's gradient per trained op: the immediate term
    sum_b d<dy_b, core(x_b, W)>/dW plus sum_b sum_k spread(L[k]) o E[k] and
    spread(Lx) o X for the op's readout paths."""
    grads = weight_grads(graph, xs, dys)
    for i, op in enumerate(graph.trained_ops()):
        leaves = op_leaves(graph, op)
        pairs = list(zip([signal[j] for j in leaves], traces["E"][i])) + [
            (lx, X) for p, lx, X in zip(graph.readout_paths, readout_signal, traces["X"])
            if p.op == i]
        dtype = signal[leaves[0]].dtype
        layout = _dense_layout(graph, op)
        if layout is not None:       # sum_b L[b, free] E[b, w]: one contraction over b
            w = _letters(len(op.weff_shape), skip="z")
            spec = f"z{''.join(w[d] for d in layout[2])},z{''.join(w)}->{''.join(w)}"
            grads[i] = grads[i] + sum(jnp.einsum(spec, L, E.astype(dtype)) for L, E in pairs)
            continue
        spread, _ = _maps(graph, op, dtype)

        def one(pairs):
            return sum(spread(L) * E.astype(dtype) for L, E in pairs)
        grads[i] = grads[i] + jnp.sum(jax.vmap(one)(pairs), axis=0)
    return grads


def advance_one(graph: Graph, traces, lin, hidden, ys, xs):
    """One sample's trace update."""
    D, Df, Jh, Jy = jacobians(graph, lin, hidden, ys)
    ops = graph.trained_ops()
    new_X = []
    for n, p in enumerate(graph.readout_paths):   # X = kappa X + dx_o/dh . E + dx_o/dy . dy/dW
        op = ops[p.op]
        E = dict(zip(op_leaves(graph, op), traces["E"][p.op]))
        dtype = Jy[n].dtype
        spread, inject = _maps(graph, op, dtype)
        x_new = (p.kappa * traces["X"][n].astype(dtype) + inject(xs[p.op], Jy[n])
                 + sum(spread(Jh[n][jj]) * E[jj].astype(dtype) for jj in Jh[n]))
        new_X.append(x_new.astype(traces["X"][n].dtype))
    new = []
    for i, op in enumerate(graph.trained_ops()):
        leaves = op_leaves(graph, op)
        E = dict(zip(leaves, traces["E"][i]))
        dtype = Df[i][0].dtype
        spread, inject = _maps(graph, op, dtype)
        out = []
        for j, df in zip(leaves, Df[i]):
            group = graph.groups[graph.group_of_leaf[j]].leaves
            e = sum(spread(D[(j, jj)]) * E[jj].astype(dtype) for jj in group) + inject(xs[i], df)
            out.append(e.astype(E[j].dtype))
        new.append(out)
    return {"E": new, "X": new_X}


def advance(graph: Graph, traces, per_sample, decay=None):
    return per_sample(lambda tr, lin, h, ys, xs: advance_one(graph, tr, lin, h, ys, xs), traces)
