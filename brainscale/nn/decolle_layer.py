"""A DECOLLE layer (Kaiser, Mostafa & Neftci 2020): current-based LIF written
through its presynaptic traces, so that dU/dW = P exactly::

    Q' = beta Q + (1 - beta) s_in                 (per presynaptic neuron)
    P' = alpha P + (1 - alpha) Q'
    R' = alpha_rp R - (1 - alpha_rp) w_rp S       (refractory, per neuron)
    U  = P' @ W + b + R'
    S' = spike(U)                                 (SuperSpike: 1 / (10|U| + 1)^2)

P and Q live on the presynaptic side (AlignPre), R and the last spike S on
the neuron. The layer returns S'. Paper defaults: alpha 0.97, beta 0.92,
alpha_rp 0.65, w_rp 1. (Its code's base layer scales the input by tau
instead of (1 - beta); here the traces are normalised, as the equations
above say.)
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from brainscale.nn.projections import Linear
from brainscale.nn.state import HiddenState, default_float
from brainscale.nn.surrogate import SuperSpike


class DecolleLayer(nnx.Module):
    def __init__(self, n_in, n_out, *, rngs, alpha=0.97, beta=0.92, alpha_rp=0.65, w_rp=1.0,
                 scale=1.0, spike_fn=SuperSpike(10.0)):
        self.alpha, self.beta = float(alpha), float(beta)
        self.alpha_rp, self.w_rp = float(alpha_rp), float(w_rp)
        self.spike_fn = spike_fn
        self.fc = Linear(n_in, n_out, rngs=rngs, scale=float(scale), use_bias=True)
        f = default_float()
        self.Q = HiddenState(jnp.zeros((n_in,), f))
        self.P = HiddenState(jnp.zeros((n_in,), f))
        self.R = HiddenState(jnp.zeros((n_out,), f))
        self.S = HiddenState(jnp.zeros((n_out,), f))

    def __call__(self, s_in):
        q = self.beta * self.Q[...] + (1 - self.beta) * s_in
        p = self.alpha * self.P[...] + (1 - self.alpha) * q
        r = self.alpha_rp * self.R[...] - (1 - self.alpha_rp) * self.w_rp * self.S[...]
        s = self.spike_fn(self.fc(p) + r)
        self.Q[...], self.P[...], self.R[...], self.S[...] = q, p, r, s
        return s
