"""BPTT, the exact reference learner: ``jax.grad`` of the mean loss through
``lax.scan`` over the user's own step, vmapped over the batch. No graph
analysis: any step ``jax.grad`` can differentiate works, and memory grows
with the sequence length T.
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
    pass through unchanged)."""
    check_batch_axis(state, xs, time_axis=True)
    apply = learner.model.apply

    def total(params):
        def body(hidden, inp):
            x, y = inp

            def one(h, xx, yy):
                h_new, out = apply(params, h, xx)
                return learner.loss(out, yy), h_new

            ls, hidden = jax.vmap(one)(hidden, x, y)
            return hidden, jnp.mean(ls)

        hidden, losses = jax.lax.scan(body, state.hidden, (xs, ys))
        return jnp.mean(losses), (losses, hidden)

    try:
        grads, (losses, hidden) = jax.grad(total, has_aux=True)(state.params)
    except ValueError as e:
        if "Reverse-mode differentiation does not work for lax.while_loop" not in str(e):
            raise
        raise _while_error(apply, state, xs) from None
    return grads, losses, hidden, state.traces, ({}, state.local)


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
