"""Homeostatic threshold: a LIF population whose firing threshold rises with
each spike and relaxes back (Diehl & Cook 2015), so that neurons which fire
a lot become harder to drive; with STDP or a Hebbian rule it spreads the
activity over the population. Per neuron: ``v`` and ``theta``::

    v'     = v d + I (1 - d),                    d = exp(-dt / tau)
    s      = spike_fn(v' - (v_th + theta))
    v'     = v' - (v_th + theta) s               (soft reset)
    theta' = theta exp(-dt / tau_theta) + theta_plus s

A model mechanism, not a rule: both states are ordinary hidden states, so
every learner compiles it unchanged.
"""
from __future__ import annotations

import math

import jax
from flax import nnx

from brainscale.nn.state import HiddenState, default_float
from brainscale.nn.surrogate import Sigmoid


class HomeostaticLIF(nnx.Module):
    def __init__(self, size, *, dt=1.0, tau=20.0, v_th=1.0, tau_theta=1000.0,
                 theta_plus=0.05, spike_fn=Sigmoid(), detach_reset=True):
        import jax.numpy as jnp
        self.size = int(size)
        self.d = math.exp(-dt / tau)
        self.d_theta = math.exp(-dt / tau_theta)
        self.v_th, self.theta_plus = float(v_th), float(theta_plus)
        self.spike_fn, self.detach_reset = spike_fn, bool(detach_reset)
        self.v = HiddenState(jnp.zeros((self.size,), default_float()))
        self.theta = HiddenState(jnp.zeros((self.size,), default_float()))

    def __call__(self, current):
        th = self.v_th + self.theta[...]
        v = self.v[...] * self.d + current * (1.0 - self.d)
        s = self.spike_fn(v - th)
        sr = jax.lax.stop_gradient(s) if self.detach_reset else s
        self.v[...] = v - th * sr
        self.theta[...] = self.theta[...] * self.d_theta + self.theta_plus * sr
        return s
