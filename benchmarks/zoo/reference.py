"""An independent reference for the zoo (no brainscale): the gradient of

    L(params) = mean_t mean_b  -log_softmax(out_tb)[y_tb]

through ``lax.scan`` over time of ``jax.vmap(entry.apply, in_axes=(None, 0, 0))``,
from the per-sample ``hidden0`` broadcast over the batch.

Reverse mode cannot differentiate ``lax.while_loop``; for entries with
``has_while`` the same derivative is taken in forward mode (``jax.jacfwd``,
one tangent per parameter scalar; the zoo's models are small).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def cross_entropy(out, y):
    """Per-sample softmax cross-entropy with an integer label."""
    return -jax.nn.log_softmax(out)[y]


def broadcast_hidden(hidden0, B):
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (B,) + jnp.shape(a)), hidden0)


def sequence_losses(entry, params, hidden0, xs, ys):
    """Per-step batch-mean losses (T,) and the final batched hidden state."""
    step = jax.vmap(entry.apply, in_axes=(None, 0, 0))

    def body(h, inp):
        x, y = inp
        h, out = step(params, h, x)
        return h, jnp.mean(jax.vmap(cross_entropy)(out, y))

    hidden, losses = lax.scan(body, broadcast_hidden(hidden0, xs.shape[1]), (xs, ys))
    return losses, hidden


def sequence_loss(entry, params, hidden0, xs, ys):
    return jnp.mean(sequence_losses(entry, params, hidden0, xs, ys)[0])


def bptt_grads(entry, params, hidden0, xs, ys):
    """d sequence_loss / d params, a pytree like ``params``."""
    f = lambda p: sequence_loss(entry, p, hidden0, xs, ys)   # noqa: E731
    if entry.has_while:
        return jax.jacfwd(f)(params)
    return jax.grad(f)(params)


def make_data(entry, T=12, B=3, seed=0):
    """xs (T, B, *in_shape) uniform in [0, 1] in the default float dtype, ys (T, B) int."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    xs = jax.random.uniform(k1, (T, B) + entry.shape, dtype=jnp.zeros(()).dtype)
    ys = jax.random.randint(k2, (T, B), 0, entry.n_out)
    return xs, ys


def init_like_learner(entry, xs, seed=0):
    """(params, hidden0) exactly as ``learner.init(PRNGKey(seed), xs[0])`` makes
    them: ``entry.init(PRNGKey(seed), xs[0][0])``."""
    return entry.init(jax.random.PRNGKey(seed), xs[0][0])
