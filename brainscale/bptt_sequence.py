"""BPTT, the exact reference learner: ``jax.grad`` of the mean loss through
``lax.scan`` over the user's own step, vmapped over the batch. No graph
analysis: any step ``jax.grad`` can differentiate works, and memory grows
with the sequence length T. Truncated BPTT runs the same per chunk of k
steps: memory grows with k instead.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from brainscale.input_checks import check_batch_axis
from transforms.errors import CompileError
from transforms.ir.trace import source_of, trace_step


def bptt_sequence(learner, state, xs, ys):
    """``(grads, losses (T,), hidden, traces, (local dws, local states))``
    over ``xs`` (T, B, ...), ``ys`` (T, B), from the hidden state in ``state``;
    the same tuple as the online learners' sequence (traces and local rules
    pass through unchanged). ``learner.algorithm.chunk_for(T)`` = k < T
    (truncated BPTT): ``jax.grad`` per chunk of k steps inside a scan over the
    chunks, the hidden state passed on with its gradient stopped; a last,
    shorter chunk takes the rest of T."""
    check_batch_axis(state, xs, time_axis=True)
    T = jax.tree_util.tree_leaves(xs)[0].shape[0]
    k = learner.algorithm.chunk_for(T)
    grad = jax.grad(_chunk_loss(learner), has_aux=True)
    try:
        if k >= T:
            grads, (losses, hidden) = grad(state.params, state.hidden, xs, ys)
        else:
            grads, losses, hidden = _chunks(grad, state, xs, ys, k, T)
    except ValueError as e:
        if "Reverse-mode differentiation does not work for lax.while_loop" not in str(e):
            raise
        raise _while_error(learner.model.apply, state, xs) from None
    grads = jax.tree.map(lambda g: g / T, grads)
    return grads, losses, hidden, state.traces, ({}, state.local)


def _chunk_loss(learner):
    """(params, hidden, xs, ys) -> (sum over the steps of the batch-mean
    loss, (per-step losses, hidden at the end))."""
    apply = learner.model.apply

    def total(params, hidden, xs, ys):
        def body(hidden, inp):
            x, y = inp

            def one(h, xx, yy):
                h_new, out = apply(params, h, xx)
                return learner.loss(out, yy), h_new

            ls, hidden = jax.vmap(one)(hidden, x, y)
            return hidden, jnp.mean(ls)

        hidden, losses = jax.lax.scan(body, hidden, (xs, ys))
        return jnp.sum(losses), (losses, hidden)
    return total


def _chunks(grad, state, xs, ys, k, T):
    """Truncated BPTT: T // k chunks of k steps in a scan, then T % k."""
    q = T // k

    def chunk(carry, inp):
        hidden, acc = carry
        g, (losses, hidden) = grad(state.params, jax.lax.stop_gradient(hidden), *inp)
        return (hidden, jax.tree.map(jnp.add, acc, g)), losses

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    body = jax.tree.map(lambda a: a[:q * k].reshape((q, k) + a.shape[1:]), (xs, ys))
    (hidden, grads), losses = jax.lax.scan(chunk, (state.hidden, zeros), body)
    losses = losses.reshape(-1)
    if T % k:
        (hidden, grads), last = chunk((hidden, grads),
                                      jax.tree.map(lambda a: a[q * k:], (xs, ys)))
        losses = jnp.concatenate([losses, last])
    return grads, losses, hidden


def _while_error(apply, state, xs):
    """BPTT's error for a step with a ``lax.while_loop``, naming its line."""
    x0 = jax.tree.map(lambda a: a[0, 0], xs)
    t = trace_step(apply, state.params, state.hidden0, x0)
    where = next((source_of(e) for e in t.eqns if e.primitive.name == "while"), None)
    return CompileError(
        "BPTT cannot differentiate this step: it runs a lax.while_loop (e.g. an adaptive "
        "ODE integrator), which reverse mode does not support", primitive="while",
        source=where, hint="use algorithm='d_rtrl' or 'es_d_rtrl' (forward-mode Jacobians "
        "through the loop), or a fixed-step integrator / lax.fori_loop with static bounds")
