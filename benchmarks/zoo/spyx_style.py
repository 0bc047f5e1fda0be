"""spyx habits in plain JAX: haiku-style parameter trees named after the
modules (``{"linear": {"w", "b"}, "lif": {"beta"}, "linear_1": ..., "LI":
...}``) with ``w`` stored (in, out) and ``TruncatedNormal(1/sqrt(fan_in))``
init, neurons that emit the spike from the potential carried IN
(``spikes = spike(V - thr); V = beta*V + x - spikes*thr``), ALIF's
``jnp.split`` / ``jnp.concatenate`` of a stacked ``VT`` state, ``LI``
readouts, and spyx.axn's surrogates superspike / arctan / triangular.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .entry import Entry

N_IN, N_HID, N_OUT = 6, 7, 3


# -- spyx.axn -----------------------------------------------------------------------------

def _surrogate(grad_fn):
    @jax.custom_jvp
    def f(x):
        return jnp.heaviside(x, 1).astype(x.dtype)

    @f.defjvp
    def _jvp(primals, tangents):
        (x,), (g,) = primals, tangents
        return f(x), g * grad_fn(x)
    return f


def superspike(k=25):
    return _surrogate(lambda x: 1 / (1 + k * jnp.abs(x)) ** 2)


def arctan(k=2):
    return _surrogate(lambda x: 1 / (1 + k * x ** 2))


def triangular(k=2):
    return _surrogate(lambda x: jnp.maximum(0, 1 - jnp.abs(k * x)))


# -- haiku-like initialisers --------------------------------------------------------------

def truncated_normal(key, shape, dtype, stddev=1.0, mean=0.0):
    return mean + stddev * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)


def hk_linear(key, fan_in, out, dtype, gain=1.0, with_bias=True):
    p = {"w": truncated_normal(key, (fan_in, out), dtype, gain / math.sqrt(fan_in))}
    if with_bias:
        p["b"] = jnp.zeros((out,), dtype)
    return p


def hk_apply_linear(p, x):
    y = jnp.dot(x, p["w"])
    return y + p["b"] if "b" in p else y


# -- models -----------------------------------------------------------------------------------

def lif(activation=superspike(), threshold=1.0):
    """hk.Linear -> snn.LIF (learnable beta) -> hk.Linear -> snn.LI."""
    def init(rng, x):
        k1, k2, k3 = jax.random.split(rng, 3)
        params = {"linear": hk_linear(k1, N_IN, N_HID, x.dtype, gain=2.5),
                  "lif": {"beta": truncated_normal(k3, (N_HID,), x.dtype, 0.25, 0.5)},
                  "linear_1": hk_linear(k2, N_HID, N_OUT, x.dtype, with_bias=False),
                  "LI": {"beta": jnp.full((N_OUT,), 0.8, x.dtype)}}
        return params, (jnp.zeros(N_HID, x.dtype), jnp.zeros(N_OUT, x.dtype))

    def apply(params, state, x):
        V, Vo = state
        x = hk_apply_linear(params["linear"], x)
        beta = params["lif"]["beta"]
        spikes = activation(V - threshold)            # from the potential carried in
        V = beta * V + x - spikes * threshold
        x = hk_apply_linear(params["linear_1"], spikes)
        Vo = params["LI"]["beta"] * Vo + x            # snn.LI
        return (V, Vo), Vo

    return Entry(name="spyx.LIF", style="spyx", init=init, apply=apply, n_in=N_IN,
                 feedforward=False,
                 note="spike from the V carried in; LI readout with a learnable per-unit decay "
                      "(a second stateful layer)")


def alif(activation=arctan(), threshold=1.0):
    """hk.Linear -> snn.ALIF (V and T stacked in one array) -> hk.Linear."""
    def init(rng, x):
        k1, k2, k3, k4 = jax.random.split(rng, 4)
        params = {"linear": hk_linear(k1, N_IN, N_HID, x.dtype, gain=3.0),
                  "ALIF": {"beta": truncated_normal(k3, (N_HID,), x.dtype, 0.1, 0.8),
                           "gamma": truncated_normal(k4, (N_HID,), x.dtype, 0.05, 0.8)},
                  "linear_1": hk_linear(k2, N_HID, N_OUT, x.dtype)}
        return params, jnp.zeros(2 * N_HID, x.dtype)

    def apply(params, VT, x):
        x = hk_apply_linear(params["linear"], x)
        V, T = jnp.split(VT, 2, -1)
        gamma, beta = params["ALIF"]["gamma"], params["ALIF"]["beta"]
        thresh = threshold + T
        spikes = activation(V - thresh)
        V = beta * V + x - spikes * thresh
        T = gamma * T + (1 - gamma) * spikes
        VT = jnp.concatenate([V, T], axis=-1)
        return VT, hk_apply_linear(params["linear_1"], spikes)

    return Entry(name="spyx.ALIF", style="spyx", init=init, apply=apply, n_in=N_IN,
                 feedforward=True,
                 note="V and adaptive T concatenated in one (2N,) state, split each step")


def rlif(activation=triangular(), threshold=1.0):
    """hk.Linear -> snn.RLIF (recurrent w, per-neuron beta clipped) -> hk.Linear -> snn.LI."""
    def init(rng, x):
        k1, k2, k3, k4 = jax.random.split(rng, 4)
        params = {"linear": hk_linear(k1, N_IN, N_HID, x.dtype, gain=2.5),
                  "RLIF": {"w": truncated_normal(k3, (N_HID, N_HID), x.dtype,
                                                 1 / math.sqrt(N_HID)),
                           "beta": truncated_normal(k4, (N_HID,), x.dtype, 0.1, 0.8)},
                  "linear_1": hk_linear(k2, N_HID, N_OUT, x.dtype),
                  "LI": {"beta": jnp.full((N_OUT,), 0.7, x.dtype)}}
        return params, (jnp.zeros(N_HID, x.dtype), jnp.zeros(N_OUT, x.dtype))

    def apply(params, state, x):
        V, Vo = state
        x = hk_apply_linear(params["linear"], x)
        recurrent = params["RLIF"]["w"]
        beta = jnp.clip(params["RLIF"]["beta"], 0, 1)
        spikes = activation(V - threshold)
        feedback = spikes @ recurrent
        V = beta * V + x + feedback - spikes * threshold
        Vo = params["LI"]["beta"] * Vo + hk_apply_linear(params["linear_1"], spikes)
        return (V, Vo), Vo

    return Entry(name="spyx.RLIF", style="spyx", init=init, apply=apply, n_in=N_IN,
                 feedforward=False,
                 note="recurrent w on spikes of the carried V; learnable clipped beta; triangular")


ENTRIES = [lif(), alif(), rlif()]
