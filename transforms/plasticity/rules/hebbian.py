"""The Hebbian family as local rules (W laid out (I, O): w[:, k] is neuron k's
incoming weight vector). Batch terms are averaged over the batch.

- ``hebb``:  dw_jk = eta (<post_k x_j> - decay w_jk)
- ``oja``:   dw_jk = eta <post_k (x_j - post_k w_jk)>
- ``hard_wta``: y = onehot(argmax_k u_k), dw_k = eta <y_k x - y_k u_k w_k>
- ``softhebb`` (Moraitis et al. 2021): y = softmax(u / tau),
  dw_k = eta <y_k (x - u_k w_k)>
- ``multilayer_softhebb`` (Journe et al. 2023): the winner k* learns with
  +y, every other neuron with -y (anti-Hebbian); per-neuron rate
  eta_k = eta0 |(||w_k|| - 1)|^p

``u`` is the op's output (the current, W^T x); ``post`` the emitted
activity. The WTA rules use only ``x`` and ``u`` (no postsynaptic state).
``with_traces`` makes any of them spiking: x and post are replaced by
exponential pre/post traces of the spike trains. Kept per synapse: nothing
beyond W; per neuron: nothing (traces: one per pre and per post neuron).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from transforms.plasticity.engine import LocalSignals, Rule


def _stateless(update, needs_post=True):
    return Rule(init=lambda *a, **k: (), update=lambda s, sig: (update(sig), s),
                needs_post=needs_post)


def hebb(eta: float, decay: float = 0.0) -> Rule:
    def update(sig: LocalSignals):
        corr = jnp.einsum("bi,bo->io", sig.x, sig.post) / sig.x.shape[0]
        return eta * (corr - decay * sig.w)
    return _stateless(update)


def oja(eta: float) -> Rule:
    def update(sig: LocalSignals):
        B = sig.x.shape[0]
        corr = jnp.einsum("bi,bo->io", sig.x, sig.post) / B
        y2 = jnp.mean(sig.post ** 2, axis=0)                  # (O,)
        return eta * (corr - y2[None, :] * sig.w)
    return _stateless(update)


def _competitive(y, sig: LocalSignals, eta):
    """eta <y_k (x - u_k w_k)> for a competition output y (B, O)."""
    B = sig.x.shape[0]
    corr = jnp.einsum("bi,bo->io", sig.x, y) / B
    yu = jnp.mean(y * sig.y, axis=0)
    return eta * (corr - yu[None, :] * sig.w)


def hard_wta(eta: float) -> Rule:
    def update(sig: LocalSignals):
        y = jax.nn.one_hot(jnp.argmax(sig.y, axis=-1), sig.y.shape[-1], dtype=sig.x.dtype)
        return _competitive(y, sig, eta)
    return _stateless(update, needs_post=False)


def softhebb(eta: float, tau: float = 1.0) -> Rule:
    def update(sig: LocalSignals):
        return _competitive(jax.nn.softmax(sig.y / tau, axis=-1), sig, eta)
    return _stateless(update, needs_post=False)


def multilayer_softhebb(eta0: float, tau: float = 1.0, p: float = 0.5) -> Rule:
    def update(sig: LocalSignals):
        soft = jax.nn.softmax(sig.y / tau, axis=-1)
        win = jax.nn.one_hot(jnp.argmax(sig.y, axis=-1), sig.y.shape[-1], dtype=soft.dtype)
        y = jnp.where(win > 0, soft, -soft)
        rate = eta0 * jnp.abs(jnp.linalg.norm(sig.w, axis=0) - 1.0) ** p   # (O,)
        return _competitive(y, sig, 1.0) * rate[None, :]
    return _stateless(update, needs_post=False)


def with_traces(rule: Rule, tau_pre: float, tau_post: float, dt: float = 1.0) -> Rule:
    """The spiking version of ``rule``: it sees exponential traces of the
    pre and post spike trains, tr <- tr exp(-dt/tau) + s, instead of the
    spikes themselves."""
    a_pre, a_post = float(jnp.exp(-dt / tau_pre)), float(jnp.exp(-dt / tau_post))

    def init(w, x_shape, post_shape, batch):
        return (jnp.zeros((batch,) + tuple(x_shape), w.dtype),
                jnp.zeros((batch,) + tuple(post_shape), w.dtype), rule.init(w, x_shape,
                                                                           post_shape, batch))

    def update(state, sig: LocalSignals):
        pre, post, inner = state
        pre = a_pre * pre + sig.x
        post = a_post * post + sig.post
        dw, inner = rule.update(inner, sig._replace(x=pre, post=post))
        return dw, (pre, post, inner)

    return Rule(init, update, needs_post=True)


__all__ = ["hebb", "oja", "hard_wta", "softhebb", "multilayer_softhebb", "with_traces"]
