"""Readout layers that map spikes (or rates) to real-valued outputs."""
from __future__ import annotations


import jax
import jax.numpy as jnp
from flax import nnx

from brainscale.nn.state import HiddenState, default_float
from brainscale.nn.time_constants import decay

__all__ = ["LeakyReadout", "LinearReadout", "leaky_readout_update"]


def leaky_readout_update(r, x, W, *, decay, b=None):
    """``r' = r * decay + x @ W (+ b)``; returns ``r'``."""
    y = x @ W
    if b is not None:
        y = y + b
    return r * decay + y


class LeakyReadout(nnx.Module):
    """Leaky integrator readout. Hidden state per output unit: ``r``::

        r' = r exp(-dt/tau) + x @ W (+ b);   returns r'

    ``W`` (Param) has shape ``(n_in, n_out)``; ``w_init(key, shape, dtype)``
    defaults to LeCun normal (std ``1/sqrt(n_in)``).
    """

    def __init__(self, n_in, n_out, *, tau=10.0, dt=1.0, rngs, w_init=None,
                 use_bias=False, r_init=0.0):
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.tau, self.dt = float(tau), float(dt)
        self.decay = decay(self.dt, self.tau)
        w_init = jax.nn.initializers.lecun_normal() if w_init is None else w_init
        self.W = nnx.Param(jnp.asarray(
            w_init(rngs.params(), (self.n_in, self.n_out), default_float()), default_float()))
        self.b = nnx.Param(jnp.zeros((self.n_out,), default_float())) if use_bias else None
        self.r = HiddenState(jnp.broadcast_to(
            jnp.asarray(r_init, default_float()), (self.n_out,)))

    def __call__(self, x):
        r = leaky_readout_update(self.r[...], x, self.W[...], decay=self.decay,
                                 b=None if self.b is None else self.b[...])
        self.r[...] = r
        return r


class LinearReadout(nnx.Module):
    """Stateless readout ``y = x @ W (+ b)``, ``W`` of shape ``(n_in, n_out)``.
    No hidden state."""

    def __init__(self, n_in, n_out, *, rngs, w_init=None, use_bias=True):
        self.n_in, self.n_out = int(n_in), int(n_out)
        w_init = jax.nn.initializers.lecun_normal() if w_init is None else w_init
        self.W = nnx.Param(jnp.asarray(
            w_init(rngs.params(), (self.n_in, self.n_out), default_float()), default_float()))
        self.b = nnx.Param(jnp.zeros((self.n_out,), default_float())) if use_bias else None

    def __call__(self, x):
        y = x @ self.W[...]
        return y + self.b[...] if self.b is not None else y
