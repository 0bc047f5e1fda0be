"""Layers the fidelity benchmark builds its networks from, written as a
user would: a recurrent layer whose input spikes pass a presynaptic
synapse, and a resonate-and-fire neuron."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from brainscale.nn.projections import Linear
from brainscale.nn.state import HiddenState, default_float
from brainscale.nn.surrogate import SuperSpike


class PreSynRecurrent(nnx.Module):
    """Recurrent layer whose feed-forward input spikes pass through a
    presynaptic (AlignPre) synapse, one state per input neuron::

        I = concatenate([syn(x), spk]) @ W;   s = neuron(I);   spk' = s

    Rows of ``W`` start as N(0, w_in_scale^2 / n_in) for the input and
    N(0, w_rec_scale^2 / n_rec) for the recurrent spikes, as in ``Recurrent``.
    """

    def __init__(self, n_in, n_rec, neuron, syn, *, rngs, w_in_scale=1.0, w_rec_scale=1.0):
        row_std = np.concatenate([np.full(n_in, w_in_scale / np.sqrt(n_in)),
                                  np.full(n_rec, w_rec_scale / np.sqrt(n_rec))]).astype(np.float32)

        def w_init(key, shape, dtype):
            return jax.random.normal(key, shape, dtype) * row_std[:, None]

        self.syn = syn
        self.linear = Linear(n_in + n_rec, n_rec, rngs=rngs, w_init=w_init)
        self.neuron = neuron
        self.spk = HiddenState(jnp.zeros((n_rec,), default_float()))

    def __call__(self, x):
        s = self.neuron(self.linear(jnp.concatenate([self.syn(x), self.spk[...]])))
        self.spk[...] = s
        return s


class Resonator(nnx.Module):
    """Resonate-and-fire neuron (Izhikevich 2001) as a user writes it: a
    damped rotation of two states by omega dt per step, spike on the
    imaginary part, both states reset::

        re' = r (cos(omega dt) re - sin(omega dt) im) + I
        im' = r (sin(omega dt) re + cos(omega dt) im),   r = exp(b dt)
        s = H(im' - thr);   (re, im) <- (re', im') (1 - s)

    ``omega`` per neuron, uniform in ``omega_range`` (fixed)."""

    def __init__(self, n, *, b=-0.05, dt=0.5, thr=0.5, omega_range=(0.5, 1.5), seed=0):
        self.r, self.thr = float(np.exp(b * dt)), thr
        omega = np.random.default_rng(seed).uniform(*omega_range, n)
        self.cos = jnp.asarray(np.cos(omega * dt), jnp.float32)
        self.sin = jnp.asarray(np.sin(omega * dt), jnp.float32)
        self.re = HiddenState(jnp.zeros((n,), default_float()))
        self.im = HiddenState(jnp.zeros((n,), default_float()))

    def __call__(self, current):
        re, im = self.re[...], self.im[...]
        re_new = self.r * (self.cos * re - self.sin * im) + current
        im_new = self.r * (self.sin * re + self.cos * im)
        s = SuperSpike(10.0)(im_new - self.thr)
        self.re[...] = re_new * (1 - s)
        self.im[...] = im_new * (1 - s)
        return s
