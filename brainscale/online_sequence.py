"""The gradient of a sequence under an online algorithm: one ``lax.scan``.

Per step, the learner's online terms (``Learner._online_terms``): the signal
d l_t/d h_{t-1} from one VJP, this step's weight-gradient terms, the traces
advanced. ES-D-RTRL over windows of k steps (``algorithm.window_for``; a
last, shorter window takes the rest of T) instead runs, per window:

1. the forward pass, step by step: hidden states, each trained op's x_t and
   y_t, and the traces advanced (they depend on the forward values only);
2. one VJP over all k steps at once, the mixing ops' outputs held at the
   forward's values (``held_output``): every step's signal and output
   cotangents from products of k B rows instead of k products of B rows;
3. one contraction of the window's stacked factors per op
   (``window_factors``).

Same gradient, same memory class (O(k B N) within a window).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from transforms.learning.signals import (linearized_cut, param_grads, readout_signal,
                                         run_step, step_signals, weight_grads)
from transforms.plasticity import terms as local_terms


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


def _unflatten_like(tree, leaves):
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), list(leaves))


def online_sequence(learner, graph, state, xs, ys):
    """``(grads, losses, hidden, traces, (dws, local))`` over ``xs`` (T, B, ...)."""
    p = _leaves(state.params)
    T, B = jax.tree_util.tree_leaves(xs)[0].shape[:2]
    k = learner.algorithm.window_for(T, B) if not learner.rules else 1
    skip = {op.param for op in graph.trained_ops()} | local_terms.local_params(graph)
    zeros_imm = [None if i in skip else jnp.zeros_like(a) for i, a in enumerate(p)]
    zeros_w = {op.index: jnp.zeros(op.weff_shape, op.weff_dtype) for op in graph.trained_ops()}
    carry = (state.hidden, state.traces, zeros_imm, zeros_w, state.local,
             local_terms.zero_like_dws(graph, p))
    add = lambda acc, g: [None if a is None else a + g[i].astype(a.dtype)
                          for i, a in enumerate(acc)]

    def step(carry, inp):
        hidden, traces, acc_imm, acc_w, local, acc_local = carry
        sig, g_weff, traces, dws, local = learner._online_terms(
            graph, state.params, hidden, traces, *inp, local)
        acc_w = {i: a + g_weff[i].astype(a.dtype) for i, a in acc_w.items()}
        acc_local = {i: a + dws[i] for i, a in acc_local.items()}
        return (_unflatten_like(hidden, sig.hidden), traces, add(acc_imm, sig.g_immediate),
                acc_w, local, acc_local), sig.loss

    def window(carry, inp):
        hidden, traces, acc_imm, acc_w, local, acc_local = carry
        h_end, traces, sig, g = window_terms(learner, graph, p, _leaves(hidden), traces, *inp)
        acc_w = {i: a + g[i].astype(a.dtype) for i, a in acc_w.items()}
        return (_unflatten_like(hidden, h_end), traces, add(acc_imm, sig.g_immediate), acc_w,
                local, acc_local), jnp.mean(sig.losses, axis=-1)

    if k == 1:
        carry, losses = jax.lax.scan(step, carry, (xs, ys))
    else:                     # T // k windows of k steps, then one of T % k
        q = T // k
        chunks = jax.tree.map(lambda a: a[:q * k].reshape((q, k) + a.shape[1:]), (xs, ys))
        carry, losses = jax.lax.scan(window, carry, chunks)
        losses = losses.reshape(-1)
        if T % k:
            carry, last = window(carry, jax.tree.map(lambda a: a[q * k:], (xs, ys)))
            losses = jnp.concatenate([losses, last])
    hidden, traces, acc_imm, acc_w, local, acc_local = carry
    grads = [g / T for g in param_grads(graph, p, acc_imm, acc_w)]
    return (_unflatten_like(state.params, grads), losses, hidden, traces, (acc_local, local))


def window_terms(learner, graph, p, hidden, traces, xs, ys):
    """One window of k steps (``xs`` leaves (k, B, ...)): the forward scan with
    the traces advanced, one VJP for all k steps' signals, one contraction.
    Returns the hidden leaves and traces at the window's end, the batched
    signals and {op index: the window's dL/dW_eff}."""
    algo = learner.algorithm
    mixing = [op.index for op in graph.trained_ops() if op.mixing]

    def forward(carry, x):
        h, tr = carry
        xx = _leaves(x)
        h_new, _, x_ops, y_ops = jax.vmap(lambda hh, xv: run_step(graph, p, hh, xv))(h, xx)

        def per_sample(fn, t1):
            def one(hh, xv, yo, xo, tr1):
                return fn(tr1, linearized_cut(graph, p, hh, xv, yo), graph.view.split(hh), yo, xo)
            return jax.vmap(one)(h, xx, y_ops, x_ops, t1)

        record = (h, tr._replace(x={}), {i: y_ops[i] for i in mixing})
        return (h_new, algo.advance(graph, tr, per_sample, x_ops)), record

    ex0 = traces.x
    (h_end, traces), (h_prev, tr_prev, held) = jax.lax.scan(forward, (hidden, traces), xs)
    sig = step_signals(graph, learner.loss, p, h_prev, _leaves(xs), ys, held=held)
    weights = getattr(algo, "path_weights", lambda g, t: None)
    rsig = jax.vmap(lambda s, tr: readout_signal(graph, p, s, graph.feedback, weights(graph, tr)))(
        sig.signal, tr_prev)
    us = jax.vmap(lambda tr, s, r: algo.neuron_cotangents(graph, tr, s, r))(
        tr_prev, sig.signal, rsig)
    g = weight_grads(graph, *algo.window_factors(graph, ex0, sig.x, sig.dy, us))
    return h_end, traces, sig, g
