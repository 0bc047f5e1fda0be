"""Norse habits in plain JAX: states and parameters as NamedTuples
(``LIFFeedForwardState(v, i)``, ``LIFParameters(tau_syn_inv, tau_mem_inv)``),
forward-Euler updates written ``dv = dt * p.tau_mem_inv * ((p.v_leak - v) + i)``
with ``dt = 1e-3``, the input added to the synaptic current after the
decay, ``threshold(x, method="super", alpha=100.)`` (SuperSpike heaviside),
resets as ``(1 - z) * v + z * v_reset`` and ``LICell`` readouts.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .entry import Entry

N_IN, N_HID, N_OUT = 5, 7, 3
DT = 1e-3


# -- norse.torch.functional.threshold ---------------------------------------------------

def heaviside(data):
    return (data > 0).astype(data.dtype)


def super_fn(alpha=100.0):
    @jax.custom_jvp
    def superspike(input_tensor):
        return heaviside(input_tensor)

    @superspike.defjvp
    def _jvp(primals, tangents):
        (inp,), (grad_output,) = primals, tangents
        return superspike(inp), grad_output / (alpha * jnp.abs(inp) + 1.0) ** 2
    return superspike


# -- parameters and states ---------------------------------------------------------------

class LIFParameters(NamedTuple):
    tau_syn_inv: jax.Array     # 1 / 5 ms
    tau_mem_inv: jax.Array     # 1 / 10 ms, per neuron


class LIFFeedForwardState(NamedTuple):
    v: jax.Array
    i: jax.Array


class LIFAdExParameters(NamedTuple):
    tau_mem_inv: jax.Array
    adaptation_current: jax.Array
    adaptation_spike: jax.Array


class LIFAdExFeedForwardState(NamedTuple):
    v: jax.Array
    i: jax.Array
    a: jax.Array


class LIState(NamedTuple):
    v: jax.Array
    i: jax.Array


def linear_init(key, in_features, out_features, dtype, gain=1.0, bias=True):
    k1, k2 = jax.random.split(key)
    bound = 1.0 / math.sqrt(in_features)
    p = {"weight": gain * jax.random.uniform(k1, (out_features, in_features), dtype,
                                             -bound, bound)}
    if bias:
        p["bias"] = jax.random.uniform(k2, (out_features,), dtype, -bound, bound)
    return p


def linear(p, x):
    y = x @ p["weight"].T
    return y + p["bias"] if "bias" in p else y


# -- functional steps ---------------------------------------------------------------------

def lif_feed_forward_step(input_tensor, state, p, threshold, v_leak=0.0, v_th=1.0,
                          v_reset=0.0, dt=DT):
    dv = dt * p.tau_mem_inv * ((v_leak - state.v) + state.i)
    v_decayed = state.v + dv
    di = -dt * p.tau_syn_inv * state.i
    i_decayed = state.i + di
    z_new = threshold(v_decayed - v_th)
    v_new = (1 - z_new) * v_decayed + z_new * v_reset
    i_new = i_decayed + input_tensor
    return z_new, LIFFeedForwardState(v=v_new, i=i_new)


def lif_adex_feed_forward_step(input_tensor, state, p, threshold, tau_syn_inv=200.0,
                               tau_ada_inv=2.0, delta_T=0.5, v_leak=0.0, v_th=1.0,
                               v_reset=0.0, dt=DT):
    dv_leak = v_leak - state.v
    dv_exp = delta_T * jnp.exp((state.v - v_th) / delta_T)
    dv = dt * p.tau_mem_inv * (dv_leak + dv_exp + state.i - state.a)
    v_decayed = state.v + dv
    di = -dt * tau_syn_inv * state.i
    i_decayed = state.i + di
    da = dt * tau_ada_inv * (p.adaptation_current * (state.v - v_leak) - state.a)
    a_decayed = state.a + da
    z_new = threshold(v_decayed - v_th)
    v_new = (1 - z_new) * v_decayed + z_new * v_reset
    i_new = i_decayed + input_tensor
    a_new = a_decayed + z_new * p.adaptation_spike
    return z_new, LIFAdExFeedForwardState(v=v_new, i=i_new, a=a_new)


def li_feed_forward_step(input_tensor, state, tau_syn_inv=200.0, tau_mem_inv=100.0,
                         v_leak=0.0, dt=DT):
    dv = dt * tau_mem_inv * ((v_leak - state.v) + state.i)
    v_new = state.v + dv
    di = -dt * tau_syn_inv * state.i
    i_new = state.i + di + input_tensor
    return v_new, LIState(v_new, i_new)


# -- models --------------------------------------------------------------------------------

def lif(threshold=super_fn()):
    """Linear -> LIFCell -> Linear (on z)."""
    def init(rng, x):
        k1, k2, k3 = jax.random.split(rng, 3)
        params = {"linear": linear_init(k1, N_IN, N_HID, x.dtype, gain=1.5),
                  "lif": LIFParameters(tau_syn_inv=jnp.asarray(200.0, x.dtype),
                                       tau_mem_inv=jax.random.uniform(k3, (N_HID,), x.dtype,
                                                                      80.0, 150.0)),
                  "out": linear_init(k2, N_HID, N_OUT, x.dtype)}
        z = jnp.zeros(N_HID, x.dtype)
        return params, LIFFeedForwardState(v=z, i=z)

    def apply(params, state, x):
        z, state = lif_feed_forward_step(linear(params["linear"], x), state, params["lif"],
                                         threshold)
        return state, linear(params["out"], z)

    return Entry(name="norse.LIF", style="norse", init=init, apply=apply, n_in=N_IN,
                 feedforward=True,
                 note="NamedTuple state/params; dt*tau_mem_inv (dt=1e-3, tau_inv~100) scaling")


def lif_adex(threshold=super_fn()):
    """Linear -> LIFAdExCell -> Linear."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        params = {"linear": linear_init(k1, N_IN, N_HID, x.dtype, gain=1.5),
                  "lif_adex": LIFAdExParameters(
                      tau_mem_inv=jnp.full((N_HID,), 100.0, x.dtype),
                      adaptation_current=jnp.full((N_HID,), 4.0, x.dtype),
                      adaptation_spike=jnp.full((N_HID,), 0.02, x.dtype)),
                  "out": linear_init(k2, N_HID, N_OUT, x.dtype)}
        z = jnp.zeros(N_HID, x.dtype)
        return params, LIFAdExFeedForwardState(v=z, i=z, a=z)

    def apply(params, state, x):
        z, state = lif_adex_feed_forward_step(linear(params["linear"], x), state,
                                              params["lif_adex"], threshold)
        return state, linear(params["out"], z)

    return Entry(name="norse.LIFAdEx", style="norse", init=init, apply=apply, n_in=N_IN,
                 feedforward=True, note="exp((v - v_th)/delta_T) term and adaptation current a")


def lif_li(threshold=super_fn()):
    """Linear -> LIFCell -> LILinearCell: the readout is a leaky integrator (second state)."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        params = {"linear": linear_init(k1, N_IN, N_HID, x.dtype, gain=4.0),
                  "lif": LIFParameters(tau_syn_inv=jnp.asarray(200.0, x.dtype),
                                       tau_mem_inv=jnp.full((N_HID,), 200.0, x.dtype)),
                  "li": linear_init(k2, N_HID, N_OUT, x.dtype, gain=4.0, bias=False)}
        z = jnp.zeros(N_HID, x.dtype)
        zo = jnp.zeros(N_OUT, x.dtype)
        return params, (LIFFeedForwardState(v=z, i=z), LIState(v=zo, i=zo))

    def apply(params, state, x):
        s_lif, s_li = state
        z, s_lif = lif_feed_forward_step(linear(params["linear"], x), s_lif, params["lif"],
                                         threshold)
        v_out, s_li = li_feed_forward_step(linear(params["li"], z), s_li)
        return (s_lif, s_li), v_out

    return Entry(name="norse.LIF+LI", style="norse", init=init, apply=apply, n_in=N_IN,
                 feedforward=False,
                 note="LI readout with two states (v, i): a second stateful layer; tuple of "
                      "NamedTuples")


ENTRIES = [lif(), lif_adex(), lif_li()]
