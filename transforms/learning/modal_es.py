"""ES-D-RTRL with modal decays: each hidden group's input traces follow the
group's own dynamics instead of one fixed decay.

Per sample, the group's mean Jacobian block M (K x K, the average over its
neurons of D_t, kept as a running mean with rate ``rate``) is diagonalised,
M = V diag(lam) W, W = V^-1, modes ordered by angle then modulus. For
D_t = M the exact trace E_t = D_t E_{t-1} + Df_t (x) x_t is a sum of K
rank-one terms, one per mode m, kept as

    ex_m,t = lam_m ex_m,t-1 + x_t                      (shape of x)
    F_m,t  = (a_m / lam_m) D_t F_m,t-1 + (1 - a_m) V[:, m] (W Df_t)_m
    E_t   ~ Re sum_m F_m,t (x) ex_m,t / c_m,t,   c_m = 1 - prod a_m

with F_m (K values per neuron, state coordinates) advanced by each
neuron's own Jacobian, so a neuron that differs from the mean carries the
difference; a_m = min(a, |lam_m|) (a mode without memory needs no
smoothing) and c_m the warm-up correction. Exact for linear dynamics with
constant Df, rotations included. A leaky readout's path uses partial
fractions and one kappa-filtered input trace per path (``neuron_cotangents``).
Memory per sample and op: K input traces and K^2 neuron factors per neuron,
complex for K > 1 (a one-state group's mode is real). Ops driving a linear
group keep the exact factorisation of ``es_d_rtrl``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from transforms.ir.graph import Graph
from transforms.learning.es_d_rtrl import linear_op
from transforms.learning.modal_basis import basis, mode_dtype
from transforms.learning.signals import jacobians, op_slots, weight_grads


class ModalTraces(NamedTuple):
    x: dict      # op -> input traces: per mode (complex for K > 1), or [ex filtered
                 # by kappa] for an op driving a linear group; then one filtered by
                 # each readout path's kappa
    f: dict      # op -> per mode, per state slot of its group: ef_m (group shape)
    xi: list     # per readout path: {"m": per mode of its op, "z": the direct
                 # y -> x_o term}, each filtered by the path's kappa
    s: dict      # group -> running mean of the Jacobian block (K, K)
    lam: dict    # group -> modal decays (K,), complex for K > 1
    q: dict      # group -> prod of a_m over the updates so far (K,) (warm-up)
    n: jax.Array  # trace updates so far


def modal_groups(graph: Graph) -> list[int]:
    """Groups whose ops get modal traces: every driven group but linear ones."""
    return sorted({g for op in graph.trained_ops() if linear_op(graph, op) is None
                   for g in op.groups})


def modes(graph: Graph, op) -> list[tuple[int, int]]:
    """(group, mode) pairs of an op, in group order."""
    return [(g, m) for g in op.groups for m in range(graph.groups[g].k)]


def _paths(graph: Graph, op):
    return [n for n, p in enumerate(graph.readout_paths) if p.op == op.index]


def _dtypes(graph: Graph, op, dtype) -> list:
    """Each mode's trace dtype: real for an op driving a linear group and for
    one-state groups, complex for the rest."""
    if linear_op(graph, op):
        return [jnp.dtype(dtype)]
    return [mode_dtype(graph.groups[g].k, dtype) for g, _ in modes(graph, op)]


def init(graph: Graph, batch: int, dtype) -> ModalTraces:
    x, f = {}, {}
    for op in graph.trained_ops():
        xshape = (batch,) + op.x_shape
        paths = [jnp.zeros(xshape, dtype) for _ in _paths(graph, op)]
        if linear_op(graph, op):
            x[op.index], f[op.index] = [jnp.zeros(xshape, dtype)] + paths, []
            continue
        x[op.index] = [jnp.zeros(xshape, c) for c in _dtypes(graph, op, dtype)] + paths
        f[op.index] = [[jnp.zeros((batch,) + graph.groups[g].shape,
                                  mode_dtype(graph.groups[g].k, dtype))] * graph.groups[g].k
                       for g, _ in modes(graph, op)]
    gs = modal_groups(graph)
    k = {g: graph.groups[g].k for g in gs}
    xi = [{"m": [jnp.zeros((batch,) + graph.groups[p.group].shape, c)
                 for c in _dtypes(graph, graph.ops[p.op], dtype)],
           "z": jnp.zeros((batch,) + graph.groups[p.group].shape, dtype)}
          for p in graph.readout_paths]
    return ModalTraces(
        x=x, f=f, xi=xi,
        s={g: jnp.zeros((batch, k[g], k[g]), dtype) for g in gs},
        lam={g: jnp.zeros((batch, k[g]), mode_dtype(k[g], dtype)) for g in gs},
        q={g: jnp.ones((batch, k[g]), dtype) for g in gs},
        n=jnp.zeros((), jnp.int32))


def batch_axes(graph: Graph) -> ModalTraces:
    """Every trace keeps the batch on axis 0; the counter is shared."""
    return jax.tree.map(lambda _: 0, init(graph, 1, jnp.float32))._replace(n=None)


def _group_block(graph, D, g):
    """Per-neuron Jacobian block of group g as (K, K, *shape)."""
    sl = graph.groups[g].slots
    return jnp.stack([jnp.stack([D[(j, jj)] for jj in sl]) for j in sl])


def advance_one(graph: Graph, tr, lin, hidden, ys, xs, decay: float, rate: float, corr):
    """One sample's update (``tr`` without the counter). ``corr`` = 1 / (1 -
    rate^(n + 1)) makes the running mean of the Jacobian block unbiased."""
    a = decay
    D, Df, Jh, Jy = jacobians(graph, lin, hidden, ys)
    s, lam, v, q, w, inv, am = {}, {}, {}, {}, {}, {}, {}
    for g in modal_groups(graph):
        k = graph.groups[g].k
        block = _group_block(graph, D, g)
        s[g] = rate * tr.s[g] + (1.0 - rate) * block.reshape(k, k, -1).mean(-1)
        lam[g], v[g], w[g] = basis(s[g] * corr)
        big = jnp.abs(lam[g]) > 1e-6
        inv[g] = jnp.where(big, 1.0 / jnp.where(big, lam[g], 1.0), 0.0)
        am[g] = jnp.minimum(a, jnp.abs(lam[g])).astype(tr.q[g].dtype)
        q[g] = am[g] * tr.q[g]
    new_x, new_f, new_xi = {}, {}, list(tr.xi)
    for op in graph.trained_ops():
        k, x = op.index, xs[op.index]
        paths = _paths(graph, op)
        lin_g = linear_op(graph, op)
        if lin_g is not None:
            exs, efs = [lin_g[0] * tr.x[k][0] + x], []
            side = [lambda n: Jh[n][op_slots(graph, op)[0]] * lin_g[1]]
        else:
            df = dict(zip(op_slots(graph, op), Df[k]))
            exs, efs, side = [], [], []
            for i, (g, m) in enumerate(modes(graph, op)):
                sl = graph.groups[g].slots
                f = tr.f[k][i]
                b = sum(w[g][m, r] * df[j] for r, j in enumerate(sl))    # (V^-1 Df)_m
                step = am[g][m] * inv[g][m]
                efs.append([step * sum(D[(j, jj)] * f[rr] for rr, jj in enumerate(sl))
                            + (1.0 - am[g][m]) * v[g][r, m] * b for r, j in enumerate(sl)])
                exs.append(lam[g][m] * tr.x[k][i] + x)
                c = 1.0 - tr.q[g][m]       # the old factor: ~ d h_{t-1}/dW
                scale = jnp.where(c > 0, 1.0 / jnp.where(c > 0, c, 1.0), 0.0)
                side.append(lambda n, f=f, sl=sl, scale=scale: scale * sum(
                    Jh[n][j] * f[r] for r, j in enumerate(sl)))
        for pi, n in enumerate(paths):
            kappa = graph.readout_paths[n].kappa
            new_xi[n] = {"m": [kappa * xm + fn(n) for xm, fn in zip(tr.xi[n]["m"], side)],
                         "z": kappa * tr.xi[n]["z"] + Jy[n]}
            exs.append(kappa * tr.x[k][len(tr.x[k]) - len(paths) + pi] + x)
        new_x[k], new_f[k] = exs, efs
    return ModalTraces(new_x, new_f, new_xi, s, lam, q, None)


def advance(graph: Graph, traces, per_sample, decay: float, rate: float):
    """Batched update; ``per_sample(fn, traces_without_counter)`` vmaps
    ``fn(traces, lin, hidden, ys, xs)`` over the batch."""
    dtype = jax.tree_util.tree_leaves(traces.s)[0].dtype if traces.s else jnp.float32
    corr = 1.0 / (1.0 - jnp.asarray(rate, dtype) ** (traces.n + 1).astype(dtype))
    new = per_sample(lambda tr, lin, h, ys, xs: advance_one(graph, tr, lin, h, ys, xs, decay,
                                                            rate, corr),
                     traces._replace(n=None))
    return new._replace(n=traces.n + 1)


NEAR = 0.05   # |kappa - lam_m| below which a readout path's partial fractions are not used


def neuron_cotangents(graph: Graph, traces, signal, decay: float, readout_signal):
    """Per trained op index (batched): ``m`` the per-mode cotangents u_m
    (the trace term is Re sum_b ex_m (x) u_m) with ``lam`` the decays
    the last update gave each ex_m (in a window, step t's ex uses the next
    step's), ``lin`` c_o L for an op driving a linear group, and ``k`` one
    cotangent per readout path, paired with the input filtered by its kappa.

    u_m = (L . V[:, m]) ef_m / c_m. A readout path p (r_t = kappa r_{t-1} +
    c_o core_o(x_o, W_o)) carries d r_{t-1}/dW through xi_m (the kappa-filtered
    Jx_h V_m ef_m / c_m) and z (the kappa-filtered Jx_y); with the mean
    xbar = (1 - kappa) xi / (1 - kappa^n') (n' the terms it holds), since sum_s kappa^(t-1-s) ex_m,s-1 =
    (ex_kappa,t-1 - ex_m,t-1) / (kappa - lam_m), it adds
    Lx xbar_m / (kappa - lam_m) to the ex_kappa cotangent, minus the same to
    u_m, and Lx zbar to the ex_kappa cotangent: exact for linear dynamics.
    Where |kappa - lam_m| < NEAR the difference would cancel; xbar_m is then
    paired with ex_m / (1 - kappa)."""
    n = traces.n
    ref = jax.tree_util.tree_leaves(signal)[0]
    dtype = jnp.real(ref).dtype
    us = {}
    for op in graph.trained_ops():
        k = op.index
        y0 = jnp.zeros(ref.shape[:1] + op.y_shape, dtype)
        paths = _paths(graph, op)
        lin = linear_op(graph, op)
        if lin is not None:
            um = [y0 + lin[1] * signal[op_slots(graph, op)[0]]]
            lams = [jnp.full(ref.shape[:1], lin[0], dtype)]
        else:
            um, lams = [], []
            for i, (g, m) in enumerate(modes(graph, op)):
                sl = graph.groups[g].slots
                c = (1.0 - traces.q[g][:, m]).reshape((-1,) + (1,) * (signal[sl[0]].ndim - 1))
                inv = jnp.where(c > 0, 1.0 / jnp.where(c > 0, c, 1.0), 0.0)
                um.append(y0 + sum(signal[j] * f for j, f in zip(sl, traces.f[k][i])) * inv)
                lams.append(traces.lam[g][:, m])
        uk = []
        for p in paths:
            kappa = graph.readout_paths[p].kappa
            u = y0 + readout_signal[p] * _mean_weight(kappa, n, dtype) * traces.xi[p]["z"]
            lx = readout_signal[p] * _mean_weight(kappa, n - 1, dtype)   # xi_m: from step 1 on
            for i, lam in enumerate(lams):
                d = (kappa - lam).reshape((-1,) + (1,) * (lx.ndim - 1))
                near = jnp.abs(d) < NEAR
                t = lx * traces.xi[p]["m"][i] / jnp.where(near, 1.0, d)
                # near kappa the difference cancels: pair xbar_m with ex_m / (1 - kappa) alone
                t_m = jnp.where(near, -lx * traces.xi[p]["m"][i] / (1.0 - kappa), t)
                um[i] = um[i] - (jnp.real(t_m) if lin is not None else t_m)
                u = u + jnp.where(near, 0.0, jnp.real(t))
            uk.append(u)
        us[k] = ({"lin": um[0]} if lin is not None else {"m": um, "lam": lams}) | {"k": uk}
    return us


def _mean_weight(kappa, n, dtype):
    """(1 - kappa) / (1 - kappa^n): turns a kappa-filtered sum of n terms into
    their weighted mean (0 before any term)."""
    c = 1.0 - jnp.asarray(kappa, dtype) ** jnp.maximum(n, 0).astype(dtype)
    return jnp.where(n > 0, (1.0 - kappa) / jnp.where(n > 0, c, 1.0), 0.0)


def _rows(e, u):
    """Stacked factors of Re sum_b e (x) u: [Re e; Im e] and [Re u; -Im u]
    for complex e, u; [e] and [u] for real ones."""
    if not jnp.iscomplexobj(e):
        return [e], [jnp.real(u)]
    return [jnp.real(e), jnp.imag(e)], [jnp.real(u), -jnp.imag(u)]


def contract(graph: Graph, traces, signal, decay: float, readout_signal, xs, dys):
    """This step's gradient per trained op: sum_b x_t (x) dy_t + Re sum_m
    ex_m,t-1 (x) u_m + the linear-group and readout-path terms, one
    contraction on stacked factors."""
    us = neuron_cotangents(graph, traces, signal, decay, readout_signal)
    X, Y = {}, {}
    for k, u in us.items():
        ex = traces.x[k]
        xr, yr = [xs[k].astype(dys[k].dtype)], [dys[k]]
        if "lin" in u:
            xr.append(ex[0])
            yr.append(u["lin"])
        for e, um in zip(ex, u.get("m", [])):
            a, b = _rows(e, um)
            xr += a
            yr += b
        xr += ex[len(ex) - len(u["k"]):]
        yr += u["k"]
        X[k], Y[k] = jnp.concatenate(xr), jnp.concatenate(yr)
    return weight_grads(graph, X, Y)


def _filters(lams, u):
    """For a window of n steps with per-step, per-sample decays ``lams``
    (n, B) (the decay step t's update applies) and cotangents ``u`` (n, B, ...):
    ubar_s = sum_{t>s} (prod_{s<r<t} lam_r) u_t and v = sum_t (prod_{r<t} lam_r) u_t,
    since ex_{t-1} = (prod_{r<t} lam_r) ex0 + sum_{s<t} (prod_{s<r<t} lam_r) x_s.
    One backward sweep, acc_t = u_t + lam_t acc_{t+1}: ubar_s = acc_{s+1},
    v = acc_0 (O(n) work, not the O(n^2) of the explicit products)."""
    lam = lams.reshape(lams.shape + (1,) * (u.ndim - 2)).astype(u.dtype)

    def back(acc, step):
        acc = step[1] + step[0] * acc
        return acc, acc

    _, acc = jax.lax.scan(back, jnp.zeros_like(u[0]), (lam, u), reverse=True)
    return jnp.concatenate([acc[1:], jnp.zeros_like(acc[:1])]), acc[0]


def window_factors(graph: Graph, decay: float, ex0, xs, dys, us):
    """Stacked factors of a window of k steps (see ``es_d_rtrl.window_factors``),
    each mode's decays varying per step and sample: one contraction over k B
    rows of inputs and B rows per real trace (2 B per complex one)."""
    X, Y = {}, {}
    flat = lambda v: v.reshape((-1,) + v.shape[2:])  # noqa: E731
    for k, u in us.items():
        x, dy, e0 = xs[k], dys[k], ex0[k]
        n, b = dy.shape[:2]
        xr, yr, back = [], [], dy
        if "lin" in u:
            ubar, v = _filters(jnp.full((n, b), linear_op(graph, graph.ops[k])[0], dy.dtype),
                               u["lin"])
            back = back + ubar
            xr.append(e0[0])
            yr.append(v)
        for e, um, lam in zip(e0, u.get("m", []), u.get("lam", [])):
            ubar, v = _filters(jnp.concatenate([lam[1:], lam[:1]]), um)
            back = back + jnp.real(ubar)
            a, c = _rows(e, v)
            xr += a
            yr += c
        paths = _paths(graph, graph.ops[k])
        for e, uk, p in zip(e0[len(e0) - len(paths):], u["k"], paths):
            kappa = graph.readout_paths[p].kappa
            ubar, v = _filters(jnp.full((n, b), kappa, dy.dtype), uk)
            back = back + ubar
            xr.append(e)
            yr.append(v)
        X[k] = jnp.concatenate([flat(x).astype(dy.dtype)] + xr)
        Y[k] = jnp.concatenate([flat(back)] + yr)
    return X, Y
