"""Step functions the way papers' reference code writes them: one
self-contained function per model, weights ``(in, out)``, surrogates
defined next to the model (SpikingJelly's sigmoid, Zenke's SuperSpike,
Bellec's triangular pseudo-derivative), and the quirks papers use:
sub-stepping loops, stacked or complex states, integer counters, lax.cond
on a mode bit of the input, noise fed in as input, adaptive integration.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .entry import Entry

N_IN, N, N_OUT = 5, 6, 3


def _surrogate(grad_fn):
    @jax.custom_jvp
    def heaviside(x):
        return (x >= 0).astype(x.dtype)

    @heaviside.defjvp
    def _jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        return heaviside(x), grad_fn(x) * dx
    return heaviside


def sj_sigmoid(alpha=4.0):            # spikingjelly.activation_based.surrogate.Sigmoid
    def g(x):
        sg = jax.nn.sigmoid(alpha * x)
        return alpha * sg * (1 - sg)
    return _surrogate(g)


def superspike(beta=10.0):            # Zenke & Ganguli 2018
    return _surrogate(lambda x: 1.0 / (beta * jnp.abs(x) + 1.0) ** 2)


def bellec(gamma=0.3):                # Bellec et al. 2018 (dampening factor gamma)
    return _surrogate(lambda x: gamma * jnp.maximum(0.0, 1.0 - jnp.abs(x)))


def _w(key, n_in, n_out, dtype, scale=1.0):
    return scale * jax.random.normal(key, (n_in, n_out), dtype) / math.sqrt(n_in)


def _ff(name, init, apply, note, ff=True, n_in=N_IN, **kw):
    return Entry(name=f"paper.{name}", style="paper", init=init, apply=apply, n_in=n_in,
                 feedforward=ff, note=note, **kw)


# -- models -------------------------------------------------------------------------------

def plif(spike=sj_sigmoid(), init_tau=2.0, v_threshold=1.0, v_reset=0.0):
    """Fang et al. 2021: v += (x - (v - v_reset)) / tau, 1/tau = sigmoid(w) shared."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        return ({"fc": {"w": _w(k1, N_IN, N, x.dtype, 4.0), "b": jnp.zeros(N, x.dtype)},
                 "plif": {"w": jnp.asarray(-math.log(init_tau - 1.0), x.dtype)},
                 "out": {"w": _w(k2, N, N_OUT, x.dtype)}}, {"v": jnp.zeros(N, x.dtype)})

    def apply(p, h, x):
        I = x @ p["fc"]["w"] + p["fc"]["b"]
        v = h["v"] + (I - (h["v"] - v_reset)) * jax.nn.sigmoid(p["plif"]["w"])
        s = spike(v - v_threshold)
        v = (1.0 - s) * v + s * v_reset                          # hard reset, not detached
        return {"v": v}, s @ p["out"]["w"]
    return _ff("PLIF", init, apply, "learnable shared scalar tau via sigmoid(w)")


def _rf_init(rng, x, scale=2.0):
    k1, k2, k3 = jax.random.split(rng, 3)
    return {"w_in": _w(k1, N_IN, N, x.dtype, scale),
            "omega": jax.random.uniform(k3, (N,), x.dtype, 0.5, 1.5),
            "w_out": _w(k2, N, N_OUT, x.dtype)}


def resonator_stacked(spike=superspike(), b=-0.1, dt=0.5, thr=0.5):
    """Izhikevich 2001 resonate-and-fire, state z = (re, im) stacked as (N, 2)."""
    def init(rng, x):
        return _rf_init(rng, x), {"z": jnp.zeros((N, 2), x.dtype)}

    def apply(p, h, x):
        z, w = h["z"], p["omega"]
        re = z[..., 0] + dt * (b * z[..., 0] - w * z[..., 1]) + x @ p["w_in"]
        im = z[..., 1] + dt * (w * z[..., 0] + b * z[..., 1])
        s = spike(im - thr)
        return {"z": jnp.stack([re * (1 - s), im * (1 - s)], -1)}, s @ p["w_out"]
    return _ff("RF.stacked", init, apply, "two state components stacked in the last axis")


def resonator_split(spike=superspike(), b=-0.1, dt=0.5, thr=0.5):
    """The same resonator with separate arrays x, y."""
    def init(rng, x):
        z = jnp.zeros(N, x.dtype)
        return _rf_init(rng, x), {"x": z, "y": z}

    def apply(p, h, inp):
        w = p["omega"]
        xr = h["x"] + dt * (b * h["x"] - w * h["y"]) + inp @ p["w_in"]
        yi = h["y"] + dt * (w * h["x"] + b * h["y"])
        s = spike(yi - thr)
        return {"x": xr * (1 - s), "y": yi * (1 - s)}, s @ p["w_out"]
    return _ff("RF.split", init, apply, "resonator with separate re/im arrays")


def _lif_params(rng, x, scale=3.0, n_in=N_IN):
    k1, k2 = jax.random.split(rng)
    return {"w": _w(k1, n_in, N, x.dtype, scale), "b": jnp.full((N,), 0.1, x.dtype),
            "w_out": _w(k2, N, N_OUT, x.dtype)}


def lateral_inhibition(spike=superspike(), beta=0.9, k=0.2):
    """LIF whose spikes inhibit the whole population: v - k * sum(s)."""
    def init(rng, x):
        return _lif_params(rng, x), {"v": jnp.zeros(N, x.dtype)}

    def apply(p, h, x):
        v = beta * h["v"] + jnp.einsum("i,ij->j", x, p["w"]) + p["b"]
        s = spike(v - 1.0)
        v = v - s - k * jnp.sum(s)
        return {"v": v}, s @ p["w_out"]
    return _ff("lateral_inhibition", init, apply,
               "population sum couples neurons (no weight)", ff=False)


def layer_norm_lif(spike=superspike(), beta=0.9, eps=1e-5):
    """Layer-norm of the synaptic current before the LIF neuron."""
    def init(rng, x):
        p = _lif_params(rng, x, 1.0)
        p["ln"] = {"scale": jnp.full((N,), 1.0, x.dtype), "bias": jnp.full((N,), 0.3, x.dtype)}
        return p, {"v": jnp.zeros(N, x.dtype)}

    def apply(p, h, x):
        I = x @ p["w"] + p["b"]
        mu = jnp.mean(I, -1, keepdims=True)
        var = jnp.mean((I - mu) ** 2, -1, keepdims=True)
        I = (I - mu) * lax.rsqrt(var + eps) * p["ln"]["scale"] + p["ln"]["bias"]
        v = beta * h["v"] + I
        s = spike(v - 1.0)
        return {"v": v - s}, s @ p["w_out"]
    return _ff("layer_norm", init, apply,
               "LN mixes neurons inside the input op: dI_i/dW_jk != 0 for i != k", ff=False)


def fixed_connectivity(spike=superspike(), beta=0.85, seed=3):
    """Spikes mixed through a constant (closed over) sparse +-0.4 matrix."""
    rs = np.random.RandomState(seed)
    C = (rs.rand(N, N) < 0.3) * rs.choice([-0.4, 0.4], (N, N)) * (1 - np.eye(N))

    def init(rng, x):
        z = jnp.zeros(N, x.dtype)
        return _lif_params(rng, x), {"v": z, "s": z}

    def apply(p, h, x):
        v = beta * h["v"] + x @ p["w"] + p["b"] + h["s"] @ jnp.asarray(C, h["s"].dtype)
        s = spike(v - 1.0)
        return {"v": v - s, "s": s}, s @ p["w_out"]
    return _ff("fixed_connectivity", init, apply,
               "constant recurrent matrix closed over (not a param)", ff=False)


def tied_recurrent(spike=superspike(), beta=0.85):
    """Symmetric recurrence from one weight: s @ R + s @ R.T."""
    def init(rng, x):
        p = _lif_params(rng, x)
        p["R"] = 0.3 * _w(jax.random.fold_in(rng, 7), N, N, x.dtype)
        z = jnp.zeros(N, x.dtype)
        return p, {"v": z, "s": z}

    def apply(p, h, x):
        v = beta * h["v"] + x @ p["w"] + p["b"] + h["s"] @ p["R"] + h["s"] @ p["R"].T
        s = spike(v - 1.0)
        return {"v": v - s, "s": s}, s @ p["w_out"]
    return _ff("tied_recurrent", init, apply, "one weight used twice (R and R.T)", ff=False)


def conv_lif(spike=sj_sigmoid(), beta=0.8, C_out=4):
    """3x3 SAME conv on (6, 6, 2) frames, LIF per pixel-channel, dense readout."""
    shape = (6, 6, 2)

    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        return ({"conv": {"kernel": _w(k1, 18, C_out, x.dtype, 2.0).reshape(3, 3, 2, C_out),
                          "bias": jnp.zeros(C_out, x.dtype)},
                 "out": {"w": _w(k2, 6 * 6 * C_out, N_OUT, x.dtype)}},
                {"v": jnp.zeros((6, 6, C_out), x.dtype)})

    def apply(p, h, x):
        I = lax.conv_general_dilated(x[None], p["conv"]["kernel"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        v = beta * h["v"] + I + p["conv"]["bias"]
        s = spike(v - 1.0)
        return {"v": v - lax.stop_gradient(s)}, s.reshape(-1) @ p["out"]["w"]
    return _ff("conv", init, apply, "lax.conv_general_dilated, 144 LIF neurons, weight sharing",
               n_in=int(np.prod(shape)), in_shape=shape)


def substep_fori(spike=superspike(), n_sub=3, dt_tau=0.4):
    """3 Euler sub-steps per step in lax.fori_loop, spike and reset inside each."""
    def init(rng, x):
        return _lif_params(rng, x, 4.0), {"v": jnp.zeros(N, x.dtype)}

    def apply(p, h, x):
        I = x @ p["w"] + p["b"]

        def body(k, carry):
            v, count = carry
            v = v + dt_tau * (I - v)
            s = spike(v - 1.0)
            return v - s, count + s
        v, count = lax.fori_loop(0, n_sub, body, (h["v"], jnp.zeros_like(h["v"])))
        return {"v": v}, count @ p["w_out"]
    return _ff("substep.fori_loop", init, apply, "lax.fori_loop of 3 sub-steps in the step")


def substep_scan(spike=superspike(), n_sub=4, a_syn=0.6, a_mem=0.7):
    """4 sub-steps of a (syn, v) neuron in lax.scan; spikes of the sub-steps stacked."""
    def init(rng, x):
        z = jnp.zeros(N, x.dtype)
        return _lif_params(rng, x, 2.0), {"syn": z, "v": z}

    def apply(p, h, x):
        I = x @ p["w"] + p["b"]

        def sub(carry, _):
            syn, v = carry
            syn = a_syn * syn + I / n_sub
            v = a_mem * v + syn
            s = spike(v - 0.5)
            return (syn, v - 0.5 * s), s
        (syn, v), ss = lax.scan(sub, (h["syn"], h["v"]), None, length=n_sub)
        return {"syn": syn, "v": v}, jnp.mean(ss, 0) @ p["w_out"]
    return _ff("substep.scan", init, apply, "lax.scan of 4 sub-steps with stacked outputs")


def cond_mode(spike=superspike(), beta=0.85):
    """The weight used depends on a mode bit in the input: lax.cond(x[-1] > 0.5)."""
    def init(rng, x):
        p = _lif_params(rng, x, 3.0, N_IN - 1)
        p["w_alt"] = _w(jax.random.fold_in(rng, 1), N_IN - 1, N, x.dtype, 3.0)
        return p, {"v": jnp.zeros(N, x.dtype)}

    def apply(p, h, x):
        u = x[:-1]
        I = lax.cond(x[-1] > 0.5, lambda: u @ p["w"], lambda: u @ p["w_alt"] * 0.5)
        v = beta * h["v"] + I + p["b"]
        s = spike(v - 1.0)
        return {"v": v - s}, s @ p["w_out"]
    return _ff("cond_mode", init, apply, "weight op inside lax.cond on a mode bit of x")


def stochastic(spike=superspike(), n_sig=2, beta=0.8):
    """Escape-noise spikes s = H(sigmoid(v - 1) - u), u ~ U(0, 1) given in x."""
    def init(rng, x):
        return _lif_params(rng, x, 3.0, n_sig), {"v": jnp.zeros(N, x.dtype)}

    def apply(p, h, x):
        sig, noise = x[:n_sig], x[n_sig:]
        v = beta * h["v"] + sig @ p["w"] + p["b"]
        s = spike(jax.nn.sigmoid(4.0 * (v - 1.0)) - noise)
        return {"v": v - s}, s @ p["w_out"]
    return _ff("stochastic", init, apply, "noise is the last N inputs (deterministic step)",
               n_in=n_sig + N)


def complex_resonator(spike=superspike(), b=0.1, dt=0.5, thr=0.6):
    """Complex state z <- z * exp((-b + i omega) dt) + x @ W, spike on z.imag."""
    def init(rng, x):
        cdt = jnp.result_type(x.dtype, jnp.complex64)
        return _rf_init(rng, x, 1.5), {"z": jnp.zeros(N, cdt)}

    def apply(p, h, x):
        z = h["z"] * jnp.exp((-b + 1j * p["omega"]) * dt) + (x @ p["w_in"]).astype(h["z"].dtype)
        s = spike(z.imag - thr)
        z = z * (1 - s)
        return {"z": z.astype(h["z"].dtype)}, s @ p["w_out"]
    return _ff("complex_resonator", init, apply, "complex hidden state, real params")


def refractory_int(spike=superspike(), beta=0.85, t_ref=2):
    """LIF with an int32 refractory counter that counts down."""
    def init(rng, x):
        return _lif_params(rng, x, 4.0), {"v": jnp.zeros(N, x.dtype),
                                          "ref": jnp.zeros(N, jnp.int32)}

    def apply(p, h, x):
        active = h["ref"] == 0
        v = jnp.where(active, beta * h["v"] + x @ p["w"] + p["b"], 0.0)
        s = spike(v - 1.0) * active.astype(v.dtype)
        ref = jnp.where(s > 0, t_ref, jnp.maximum(h["ref"] - 1, 0)).astype(jnp.int32)
        return {"v": jnp.where(s > 0, 0.0, v), "ref": ref}, s @ p["w_out"]
    return _ff("refractory_int", init, apply, "int32 hidden counter; where-gated integration")


def adaptive_ode(spike=superspike(), tau=2.0, h0=0.3, max_iter=40):
    """Membrane integrated over one step (t in [0, 1]) with a per-neuron adaptive
    step h = h0 / (1 + |f(v)|) in lax.while_loop: the step count depends on data."""
    def init(rng, x):
        return _lif_params(rng, x, 4.0), {"v": jnp.zeros(N, x.dtype)}

    def apply(p, h, x):
        I = x @ p["w"] + p["b"]

        def f(v):
            return (-v + I + 0.5 * jnp.tanh(2.0 * v)) / tau

        def cond(c):
            t, _, k = c
            return jnp.any(t < 1.0) & (k < max_iter)

        def body(c):
            t, v, k = c
            dv = f(v)
            step = lax.stop_gradient(jnp.minimum(1.0 - t, h0 / (1.0 + jnp.abs(dv))))
            step = jnp.where(t < 1.0, step, 0.0)
            return t + step, v + step * dv, k + 1
        _, v, _ = lax.while_loop(cond, body, (jnp.zeros_like(h["v"]), h["v"], 0))
        s = spike(v - 1.0)
        return {"v": v - s}, s @ p["w_out"]
    return _ff("adaptive_ode.while", init, apply, "lax.while_loop, data-dependent step count",
               has_while=True)


def alif_2layer(spike=bellec(), N1=6, N2=5, alpha=0.9, rho=0.95, beta_a=1.8, thr=0.6):
    """Bellec et al. 2018 LSNN: two recurrent ALIF layers (e-prop's network)."""
    def init(rng, x):
        ks = jax.random.split(rng, 5)
        p = {"w_in": _w(ks[0], N_IN, N1, x.dtype, 2.0), "w_rec1": _w(ks[1], N1, N1, x.dtype, 0.5),
             "w_12": _w(ks[2], N1, N2, x.dtype, 2.0), "w_rec2": _w(ks[3], N2, N2, x.dtype, 0.5),
             "w_out": _w(ks[4], N2, N_OUT, x.dtype)}
        h = {f"{k}{i}": jnp.zeros(n, x.dtype) for i, n in ((1, N1), (2, N2)) for k in "vaz"}
        return p, h

    def layer(v, a, z, I, w_rec):
        B = thr + beta_a * a
        v = alpha * v + I + z @ w_rec - z * thr
        z = spike((v - B) / thr)
        a = rho * a + (1 - rho) * z
        return v, a, z

    def apply(p, h, x):
        I1 = jnp.einsum("i,ij->j", x, p["w_in"])
        v1, a1, z1 = layer(h["v1"], h["a1"], h["z1"], I1, p["w_rec1"])
        I2 = jnp.einsum("i,ij->j", z1, p["w_12"])
        v2, a2, z2 = layer(h["v2"], h["a2"], h["z2"], I2, p["w_rec2"])
        hid = {"v1": v1, "a1": a1, "z1": z1, "v2": v2, "a2": a2, "z2": z2}
        return hid, z2 @ p["w_out"]
    return _ff("ALIF.2layer", init, apply, "two recurrent ALIF layers (Bellec LSNN)", ff=False)


ENTRIES = [plif(), resonator_stacked(), resonator_split(), lateral_inhibition(),
           layer_norm_lif(), fixed_connectivity(), tied_recurrent(), conv_lif(),
           substep_fori(), substep_scan(), cond_mode(), stochastic(), complex_resonator(),
           refractory_int(), adaptive_ode(), alif_2layer()]
