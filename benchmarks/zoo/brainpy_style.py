"""brainpy habits in plain JAX (no brainpy import): membrane potentials in
mV (``V_rest=0, V_reset=-5, V_th=20``), exponential-Euler updates with
``exp(-dt / tau)``, ``bm.surrogate`` functions whose heaviside is
``x >= 0``, ``detach_spk`` resets through ``lax.stop_gradient``, soft
(``V -= (V_th - V_reset) * spike``) and hard resets, ``bp.dnn.Dense``
weights ``{"W": (in, out), "b"}``, a delay line kept as a shift buffer,
an AlignPost exponential conductance and Izhikevich's (V, u) with
``bm.where`` resets.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from .entry import Entry

N_IN, N_HID, N_OUT = 5, 6, 3
DT = 1.0   # ms


# -- brainpy.math.surrogate -----------------------------------------------------------------

def _heaviside_surrogate(grad_fn):
    @jax.custom_jvp
    def f(x):
        return jnp.asarray(x >= 0., dtype=x.dtype)

    @f.defjvp
    def _jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        return f(x), grad_fn(x) * dx
    return f


def sigmoid(alpha=4.):
    def grad(x):
        sg = jax.nn.sigmoid(alpha * x)
        return alpha * sg * (1. - sg)
    return _heaviside_surrogate(grad)


def inv_square_grad(alpha=100.):
    return _heaviside_surrogate(lambda x: 1 / (alpha * jnp.abs(x) + 1.) ** 2)


def arctan(alpha=1.):
    return _heaviside_surrogate(lambda x: alpha * 0.5 / (1 + (math.pi / 2 * alpha * x) ** 2))


# -- bp.dnn.Dense with bp.init.KaimingNormal -------------------------------------------------

def dense_init(key, num_in, num_out, dtype, scale=1.0, b_init=0.0):
    W = scale * math.sqrt(2.0 / num_in) * jax.random.normal(key, (num_in, num_out), dtype)
    return {"W": W, "b": jnp.full((num_out,), b_init, dtype)}


def dense(p, x):
    return x @ p["W"] + p["b"]


# -- models ----------------------------------------------------------------------------------

def lif(spk_fun=sigmoid(alpha=0.5), V_rest=0., V_reset=-5., V_th=20., R=1., tau=10.,
        detach_spk=True):
    """Dense -> bp.dyn.Lif (exp-Euler, soft reset of a detached spike) -> Dense."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        params = {"fc": dense_init(k1, N_IN, N_HID, x.dtype, scale=60., b_init=15.),
                  "out": dense_init(k2, N_HID, N_OUT, x.dtype)}
        return params, {"V": jnp.full((N_HID,), V_rest, x.dtype)}

    def apply(params, hidden, x):
        I = dense(params["fc"], x)
        V = V_rest + (hidden["V"] - V_rest) * jnp.exp(-DT / tau) \
            + R * I * (1. - jnp.exp(-DT / tau))
        spike = spk_fun(V - V_th)
        spike_no_grad = lax.stop_gradient(spike) if detach_spk else spike
        V = V - (V_th - V_reset) * spike_no_grad
        return {"V": V}, dense(params["out"], spike)

    return Entry(name="brainpy.LIF", style="brainpy", init=init, apply=apply, n_in=N_IN,
                 feedforward=True,
                 note="mV units, exp(-dt/tau) Euler, detach_spk (stop_gradient) soft reset")


def lif_learn_tau(spk_fun=arctan(alpha=0.2), V_rest=0., V_reset=-5., V_th=20.):
    """Dense -> Lif with a trainable per-neuron tau (alpha and 1 - alpha) -> Dense."""
    def init(rng, x):
        k1, k2, k3 = jax.random.split(rng, 3)
        params = {"fc": dense_init(k1, N_IN, N_HID, x.dtype, scale=60., b_init=15.),
                  "lif": {"tau": jax.random.uniform(k3, (N_HID,), x.dtype, 5., 20.)},
                  "out": dense_init(k2, N_HID, N_OUT, x.dtype)}
        return params, {"V": jnp.full((N_HID,), V_rest, x.dtype)}

    def apply(params, hidden, x):
        alpha = jnp.exp(-DT / params["lif"]["tau"])
        V = alpha * hidden["V"] + (1. - alpha) * (V_rest + dense(params["fc"], x))
        spike = spk_fun(V - V_th)
        V = V + (V_reset - V) * spike                          # spk_reset="hard"
        return {"V": V}, dense(params["out"], spike)

    return Entry(name="brainpy.LIF.learn_tau", style="brainpy", init=init, apply=apply,
                 n_in=N_IN, feedforward=True,
                 note="trainable tau used twice: alpha=exp(-dt/tau) and (1-alpha); hard reset")


def lif_delay(spk_fun=sigmoid(alpha=0.5), delay_steps=3, V_rest=0., V_reset=-5., V_th=20.,
              tau=10.):
    """Dense -> Lif -> spike delay line (shift buffer (D, N)) -> Dense on buf[0]."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        params = {"fc": dense_init(k1, N_IN, N_HID, x.dtype, scale=60., b_init=15.),
                  "out": dense_init(k2, N_HID, N_OUT, x.dtype)}
        return params, {"V": jnp.full((N_HID,), V_rest, x.dtype),
                        "delay": jnp.zeros((delay_steps, N_HID), x.dtype)}

    def apply(params, hidden, x):
        decay = jnp.exp(-DT / tau)
        V = V_rest + (hidden["V"] - V_rest) * decay + dense(params["fc"], x) * (1. - decay)
        spike = spk_fun(V - V_th)
        V = V - (V_th - V_reset) * spike
        buf = hidden["delay"]
        delayed = buf[0]                                       # spikes of step t - D
        buf = jnp.concatenate([buf[1:], spike[None]])
        return {"V": V, "delay": buf}, dense(params["out"], delayed)

    return Entry(name="brainpy.LIF.delay", style="brainpy", init=init, apply=apply, n_in=N_IN,
                 feedforward=True,
                 note="readout of spikes delayed by a (D, N) shift buffer: loss reads s(t-D)")


def align_post(spk_fun=sigmoid(alpha=0.5), tau_syn=5., E=60., V_rest=0., V_reset=-5.,
               V_th=20., tau=10.):
    """Input -> AlignPostProj(Expon, COBA) -> Lif -> Dense: g lives on the post side."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        W = jnp.abs(jax.random.normal(k1, (N_IN, N_HID), x.dtype)) * 0.2
        params = {"proj": {"comm": {"weight": W}},
                  "out": dense_init(k2, N_HID, N_OUT, x.dtype)}
        z = jnp.zeros((N_HID,), x.dtype)
        return params, {"syn.g": z, "post.V": z + V_rest}

    def apply(params, hidden, x):
        g = hidden["syn.g"] * jnp.exp(-DT / tau_syn) + x @ params["proj"]["comm"]["weight"]
        I = g * (E - hidden["post.V"])                        # COBA output
        decay = jnp.exp(-DT / tau)
        V = V_rest + (hidden["post.V"] - V_rest) * decay + I * (1. - decay)
        spike = spk_fun(V - V_th)
        V = V - (V_th - V_reset) * spike
        return {"syn.g": g, "post.V": V}, dense(params["out"], spike)

    return Entry(name="brainpy.AlignPost", style="brainpy", init=init, apply=apply,
                 n_in=N_IN, feedforward=True,
                 note="exponential conductance g (post-aligned) times (E - V): weight op feeds g")


def izhikevich(spk_fun=inv_square_grad(alpha=1.), a=0.02, b=0.20, c=-65., d=8., V_th=30.,
               dt=0.5):
    """Dense -> bp.dyn.Izhikevich (V, u), Euler, bm.where reset -> Dense."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        params = {"fc": dense_init(k1, N_IN, N_HID, x.dtype, scale=20., b_init=10.),
                  "out": dense_init(k2, N_HID, N_OUT, x.dtype, scale=1.)}
        return params, {"V": jnp.full((N_HID,), c, x.dtype),
                        "u": jnp.full((N_HID,), b * c, x.dtype)}

    def apply(params, hidden, x):
        I = dense(params["fc"], x)
        V, u = hidden["V"], hidden["u"]
        dV = 0.04 * V * V + 5 * V + 140 - u + I
        du = a * (b * V - u)
        V = V + dt * dV
        u = u + dt * du
        spike = spk_fun(V - V_th)
        V = jnp.where(spike > 0., c, V)
        u = jnp.where(spike > 0., u + d, u)
        return {"V": V, "u": u}, dense(params["out"], spike)

    return Entry(name="brainpy.Izhikevich", style="brainpy", init=init, apply=apply,
                 n_in=N_IN, feedforward=True,
                 note="quadratic V, (V, u) pair, where-resets to constants c and u + d")


ENTRIES = [lif(), lif_learn_tau(), lif_delay(), align_post(), izhikevich()]
