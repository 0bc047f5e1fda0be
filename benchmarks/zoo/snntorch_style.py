"""snnTorch habits in plain JAX: ``nn.Linear`` weights stored torch-style as
``(out, in)`` and applied as ``x @ W.T + b``, neurons as in
``snntorch/_neurons``: the reset of step t is computed from the membrane of
step t-1 and detached (``mem_reset``: ``spike_grad(mem - thr).detach()``),
``beta.clamp(0, 1)``, ``reset_mechanism`` "subtract" / "zero" / "none",
the surrogates ``fast_sigmoid(slope=25)`` and ``atan(alpha=2)``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from .entry import Entry

N_IN, N_HID, N_OUT = 6, 8, 3


# -- snntorch.surrogate ------------------------------------------------------------------

def fast_sigmoid(slope=25):
    @jax.custom_jvp
    def inner(input_):
        return (input_ > 0).astype(input_.dtype)

    @inner.defjvp
    def _jvp(primals, tangents):
        (input_,), (grad_input,) = primals, tangents
        return inner(input_), grad_input / (slope * jnp.abs(input_) + 1.0) ** 2
    return inner


def atan(alpha=2.0):
    @jax.custom_jvp
    def inner(input_):
        return (input_ > 0).astype(input_.dtype)

    @inner.defjvp
    def _jvp(primals, tangents):
        (input_,), (grad_input,) = primals, tangents
        grad = alpha / 2 / (1 + (math.pi / 2 * alpha * input_) ** 2) * grad_input
        return inner(input_), grad
    return inner


# -- torch.nn.Linear -------------------------------------------------------------------

def linear_init(key, in_features, out_features, dtype, gain=1.0):
    """torch's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias."""
    k1, k2 = jax.random.split(key)
    bound = 1.0 / math.sqrt(in_features)
    return {"weight": gain * jax.random.uniform(k1, (out_features, in_features), dtype,
                                                -bound, bound),
            "bias": jax.random.uniform(k2, (out_features,), dtype, -bound, bound)}


def linear(p, x):
    return x @ p["weight"].T + p["bias"]


def _keys(rng, n):
    return jax.random.split(rng, n)


# -- models ------------------------------------------------------------------------------

def leaky(beta=0.9, threshold=1.0, spike_grad=fast_sigmoid(slope=25)):
    """fc1 -> Leaky(beta, reset_mechanism="subtract") -> fc2 on spikes."""
    def init(rng, x):
        k1, k2 = _keys(rng, 2)
        params = {"fc1": linear_init(k1, N_IN, N_HID, x.dtype, gain=3.0),
                  "fc2": linear_init(k2, N_HID, N_OUT, x.dtype)}
        return params, {"mem1": jnp.zeros(N_HID, x.dtype)}

    def apply(params, hidden, x):
        mem1 = hidden["mem1"]
        reset = lax.stop_gradient(spike_grad(mem1 - threshold))     # mem_reset(self.mem)
        cur1 = linear(params["fc1"], x)
        mem1 = beta * mem1 + cur1 - reset * threshold               # _base_sub
        spk1 = spike_grad(mem1 - threshold)                         # fire
        return {"mem1": mem1}, linear(params["fc2"], spk1)

    return Entry(name="snntorch.Leaky", style="snntorch", init=init, apply=apply,
                 n_in=N_IN, feedforward=True,
                 note="reset from the previous mem, detached; torch (out, in) weights")


def leaky_learn_beta(threshold=1.0, spike_grad=fast_sigmoid(slope=25)):
    """Leaky(beta=rand(N), learn_beta=True, reset_mechanism="zero"); readout of mem."""
    def init(rng, x):
        k1, k2, k3 = _keys(rng, 3)
        params = {"fc1": linear_init(k1, N_IN, N_HID, x.dtype, gain=3.0),
                  "lif1": {"beta": jax.random.uniform(k3, (N_HID,), x.dtype, 0.6, 1.1)},
                  "fc2": linear_init(k2, N_HID, N_OUT, x.dtype)}
        return params, {"mem1": jnp.zeros(N_HID, x.dtype)}

    def apply(params, hidden, x):
        mem1 = hidden["mem1"]
        beta = jnp.clip(params["lif1"]["beta"], 0, 1)                # self.beta.clamp(0, 1)
        reset = lax.stop_gradient(spike_grad(mem1 - threshold))
        mem1 = jnp.where(reset > 0, jnp.zeros_like(mem1), mem1)      # _base_zero
        mem1 = beta * mem1 + linear(params["fc1"], x)
        spk1 = spike_grad(mem1 - threshold)
        return {"mem1": mem1}, linear(params["fc2"], mem1 * 0.5 + spk1)

    return Entry(name="snntorch.Leaky.learn_beta", style="snntorch", init=init, apply=apply,
                 n_in=N_IN, feedforward=True,
                 note="per-neuron beta clamped to [0, 1] (some start above 1); zero reset via where")


def leaky_learn_threshold(beta=0.85, spike_grad=atan(alpha=2.0)):
    """Leaky(learn_threshold=True, reset_delay=False) -> fc2 -> Leaky(reset="none") readout."""
    def init(rng, x):
        k1, k2 = _keys(rng, 2)
        params = {"fc1": linear_init(k1, N_IN, N_HID, x.dtype, gain=3.0),
                  "lif1": {"threshold": jnp.full((N_HID,), 1.0, x.dtype)},
                  "fc2": linear_init(k2, N_HID, N_OUT, x.dtype),
                  "lif2": {"beta": jnp.asarray(0.8, x.dtype)}}
        return params, {"mem1": jnp.zeros(N_HID, x.dtype), "mem2": jnp.zeros(N_OUT, x.dtype)}

    def apply(params, hidden, x):
        thr = params["lif1"]["threshold"]
        mem1 = beta * hidden["mem1"] + linear(params["fc1"], x)
        spk1 = spike_grad(mem1 - thr)
        mem1 = mem1 - spk1 * thr                       # reset_delay=False: do_reset * threshold
        beta2 = jnp.clip(params["lif2"]["beta"], 0, 1)
        mem2 = beta2 * hidden["mem2"] + linear(params["fc2"], spk1)   # reset_mechanism="none"
        return {"mem1": mem1, "mem2": mem2}, mem2

    return Entry(name="snntorch.Leaky.learn_threshold", style="snntorch", init=init,
                 apply=apply, n_in=N_IN, feedforward=False,
                 note="learnable threshold in spike and reset (v - s*thr); leaky readout with a "
                      "learnable decay (a second stateful layer)")


def synaptic(alpha=0.8, beta=0.9, threshold=1.0, spike_grad=fast_sigmoid(slope=25)):
    """fc1 -> Synaptic(alpha, beta) -> fc2."""
    def init(rng, x):
        k1, k2 = _keys(rng, 2)
        params = {"fc1": linear_init(k1, N_IN, N_HID, x.dtype, gain=2.0),
                  "fc2": linear_init(k2, N_HID, N_OUT, x.dtype)}
        z = jnp.zeros(N_HID, x.dtype)
        return params, {"syn1": z, "mem1": z}

    def apply(params, hidden, x):
        syn, mem = hidden["syn1"], hidden["mem1"]
        reset = lax.stop_gradient(spike_grad(mem - threshold))
        syn = alpha * syn + linear(params["fc1"], x)
        mem = beta * mem + syn - reset * threshold
        spk = spike_grad(mem - threshold)
        return {"syn1": syn, "mem1": mem}, linear(params["fc2"], spk)

    return Entry(name="snntorch.Synaptic", style="snntorch", init=init, apply=apply,
                 n_in=N_IN, feedforward=True, note="syn current then mem (two states per neuron)")


def alpha_neuron(alpha=0.9, beta=0.8, threshold=1.0, spike_grad=atan()):
    """fc1 -> Alpha(alpha, beta): excitatory + inhibitory exponential currents."""
    tau_alpha = math.log(alpha) / (math.log(beta) - math.log(alpha)) + 1

    def init(rng, x):
        k1, k2 = _keys(rng, 2)
        params = {"fc1": linear_init(k1, N_IN, N_HID, x.dtype, gain=3.0),
                  "fc2": linear_init(k2, N_HID, N_OUT, x.dtype)}
        z = jnp.zeros(N_HID, x.dtype)
        return params, {"syn_exc": z, "syn_inh": z, "mem": z}

    def apply(params, hidden, x):
        reset = lax.stop_gradient(spike_grad(hidden["mem"] - threshold))
        input_ = linear(params["fc1"], x)
        syn_exc = alpha * hidden["syn_exc"] + input_
        syn_inh = beta * hidden["syn_inh"] - input_
        syn_exc = syn_exc - reset * threshold
        mem = tau_alpha * (syn_exc + syn_inh)
        spk = spike_grad(mem - threshold)
        return {"syn_exc": syn_exc, "syn_inh": syn_inh, "mem": mem}, linear(params["fc2"], spk)

    return Entry(name="snntorch.Alpha", style="snntorch", init=init, apply=apply, n_in=N_IN,
                 feedforward=True,
                 note="mem is a function of two currents (no self-decay of mem)")


def rleaky(beta=0.9, threshold=1.0, spike_grad=fast_sigmoid(slope=25)):
    """fc1 -> RLeaky(all_to_all=True): recurrent nn.Linear on last step's spikes."""
    def init(rng, x):
        k1, k2, k3 = _keys(rng, 3)
        params = {"fc1": linear_init(k1, N_IN, N_HID, x.dtype, gain=3.0),
                  "lif1": {"recurrent": linear_init(k3, N_HID, N_HID, x.dtype)},
                  "fc2": linear_init(k2, N_HID, N_OUT, x.dtype)}
        z = jnp.zeros(N_HID, x.dtype)
        return params, {"spk1": z, "mem1": z}

    def apply(params, hidden, x):
        spk, mem = hidden["spk1"], hidden["mem1"]
        reset = lax.stop_gradient(spike_grad(mem - threshold))
        mem = (beta * mem + linear(params["fc1"], x)
               + linear(params["lif1"]["recurrent"], spk) - reset * threshold)
        spk = spike_grad(mem - threshold)
        return {"spk1": spk, "mem1": mem}, linear(params["fc2"], spk)

    return Entry(name="snntorch.RLeaky", style="snntorch", init=init, apply=apply, n_in=N_IN,
                 feedforward=False, note="all-to-all recurrent Linear with bias on s(t-1)")


def rsynaptic(alpha=0.7, beta=0.9, threshold=1.0, spike_grad=atan()):
    """fc1 -> RSynaptic(all_to_all=True): recurrence into the synaptic current."""
    def init(rng, x):
        k1, k2, k3 = _keys(rng, 3)
        params = {"fc1": linear_init(k1, N_IN, N_HID, x.dtype, gain=2.0),
                  "lif1": {"recurrent": linear_init(k3, N_HID, N_HID, x.dtype)},
                  "fc2": linear_init(k2, N_HID, N_OUT, x.dtype)}
        z = jnp.zeros(N_HID, x.dtype)
        return params, {"spk1": z, "syn1": z, "mem1": z}

    def apply(params, hidden, x):
        spk, syn, mem = hidden["spk1"], hidden["syn1"], hidden["mem1"]
        reset = lax.stop_gradient(spike_grad(mem - threshold))
        syn = alpha * syn + linear(params["fc1"], x) + linear(params["lif1"]["recurrent"], spk)
        mem = beta * mem + syn - reset * threshold
        spk = spike_grad(mem - threshold)
        return {"spk1": spk, "syn1": syn, "mem1": mem}, linear(params["fc2"], spk)

    return Entry(name="snntorch.RSynaptic", style="snntorch", init=init, apply=apply,
                 n_in=N_IN, feedforward=False, note="recurrent spikes into the syn current")


ENTRIES = [leaky(), leaky_learn_beta(), leaky_learn_threshold(), synaptic(), alpha_neuron(),
           rleaky(), rsynaptic()]
