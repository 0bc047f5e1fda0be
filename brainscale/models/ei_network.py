"""A biologically plausible excitatory-inhibitory ALIF network (BrainScale
paper, Fig. 5): ``n_rec`` (800) adaptive LIF neurons, ``exc_fraction`` (4/5)
of them excitatory, sparse recurrent connections with probability
``p_rec`` (20%) that obey Dale's law, and a leaky readout.

Per-sample step (``z`` the previous step's spikes, ``sign`` +1 for an
excitatory, -1 for an inhibitory presynaptic neuron)::

    I  = x @ W_in + segment_sum(|w| * sign[pre] * z[pre], post)
    z' = ALIF(I)          (tau 20 ms, adaptation tau_a, strength beta)
    r' = r exp(-dt/tau_out) + (z' * mask) @ W_out;   return r'

(``mask`` is 1 on the neurons the readout sees, 0 elsewhere).

- Recurrence: ``SparseLinear(prob=p_rec, dale=sign)``. The trained value of
  a synapse is ``w``; the value used is ``|w| * sign[pre]``, so every synapse
  keeps the sign of its presynaptic neuron whatever the optimizer does.
  Initial magnitudes are ``|N(0, w_rec_scale^2 / (p_rec n_rec))|``, those of
  inhibitory synapses multiplied by ``n_exc / n_inh`` (``balanced``) so the
  mean recurrent input starts at zero. ``rec_compute="dense"`` (default)
  computes the product on the densified matrix: same parameters and
  gradients, about 13x faster per step on CPU at 800 neurons than
  ``"segment"`` (a scatter-add, for networks of 10^4 neurons and more;
  see ``SparseLinear``).
- Input: a dense ``Linear`` without sign constraint (external afferents, as
  in e-prop), ``N(0, w_in_scale^2 / n_in)``.
- Readout: ``LeakyReadout`` from the excitatory neurons only
  (``readout="exc"``: in cortex the long-range projections are excitatory)
  or from all neurons (``readout="all"``). With ``"exc"`` the readout sees
  ``z * exc_mask`` (a constant 0/1 vector, elementwise, so the compiler
  still finds the readout's temporal path) and the rows of ``W_out`` of the
  inhibitory neurons start at 0 and get a zero gradient.

Neurons ``0 .. n_exc-1`` are excitatory, the rest inhibitory. The ALIF
membrane takes ``I (1 - exp(-dt/tau))`` per step (about I/20), hence the
large default scales: with ``w_in_scale`` 50 and ``w_rec_scale`` 10 the
network fires at about 10 Hz during the evidence task's cues, stays nearly
silent in its delay (the memory is in the adaptation ``a``, tau_a 2 s) and
fires at 15-25 Hz in its recall, whatever ``n_rec`` (weights are scaled by
the fan-in).
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import jax.numpy as jnp
import numpy as np
from flax import nnx

from brainscale.models.options import option, resolve
from brainscale.nn.neurons import ALIF
from brainscale.nn.projections import Linear, SparseLinear
from brainscale.nn.readout import LeakyReadout
from brainscale.nn.state import HiddenState, default_float

__all__ = ["EINetwork", "EINetworkOptions", "ei_network", "record_spikes", "MODEL_DEFAULTS"]

@dataclasses.dataclass(frozen=True)
class EINetworkOptions:
    """The JSON options of ``ei_network`` (a config's ``model`` object)."""

    n_rec: int = option(800, "recurrent ALIF neurons")
    exc_fraction: float = option(0.8, "fraction of excitatory neurons")
    p_rec: float = option(0.2, "recurrent connection probability")
    tau: float = option(20.0, "membrane time constant (ms)")
    tau_a: float = option(2000.0, "adaptation time constant (ms)")
    beta: float = option(0.07, "adaptation strength")
    w_in_scale: float = option(50.0, "input weights ~ N(0, w_in_scale^2 / n_in)")
    w_rec_scale: float = option(10.0, "recurrent magnitudes ~ |N(0, w_rec_scale^2 / (p_rec n_rec))|")
    balanced: bool = option(True, "scale inhibitory synapses by n_exc / n_inh")
    tau_out: float = option(20.0, "leaky readout time constant (ms)")
    readout: Literal["exc", "all"] = option("exc", "which neurons the readout sees")
    conn_seed: int = option(0, "seed of the sparse connectivity")
    rec_compute: Literal["dense", "segment"] = option("dense", "recurrent product: densified "
                                                               "matrix or scatter-add")


MODEL_DEFAULTS = resolve(EINetworkOptions, {})


class EINetwork(nnx.Module):
    """See the module docstring. ``sign`` (a constant ``(n_rec,)`` array) is
    +1 for the excitatory and -1 for the inhibitory neurons."""

    def __init__(self, n_in, n_out, *, rngs, n_rec=800, exc_fraction=0.8, p_rec=0.2,
                 tau=20.0, tau_a=2000.0, beta=0.07, w_in_scale=50.0, w_rec_scale=10.0,
                 balanced=True, tau_out=20.0, readout="exc", conn_seed=0,
                 rec_compute="dense", dt=1.0):
        if readout not in ("exc", "all"):
            raise ValueError(f"readout must be 'exc' or 'all', got {readout!r}")
        self.n_in, self.n_out, self.n_rec = int(n_in), int(n_out), int(n_rec)
        self.n_exc = int(round(exc_fraction * self.n_rec))
        self.n_inh = self.n_rec - self.n_exc
        if not 0 < self.n_exc <= self.n_rec:
            raise ValueError(f"exc_fraction {exc_fraction} leaves no excitatory neuron "
                             f"among {self.n_rec}")
        sign = np.where(np.arange(self.n_rec) < self.n_exc, 1.0, -1.0).astype(np.float32)
        self.sign = nnx.Variable(jnp.asarray(sign))
        self.inp = Linear(self.n_in, self.n_rec, rngs=rngs, scale=float(w_in_scale))
        self.rec = SparseLinear(self.n_rec, self.n_rec, rngs=rngs, prob=float(p_rec),
                                seed=int(conn_seed), dale=sign, compute=rec_compute,
                                w_init_std=float(w_rec_scale) / np.sqrt(p_rec * self.n_rec))
        if balanced and self.n_inh > 0:
            gain = np.where(sign > 0, 1.0, self.n_exc / self.n_inh)
            w = np.asarray(self.rec.W[...])
            self.rec.W[...] = jnp.asarray(w * gain[np.asarray(self.rec.pre_idx[...])], w.dtype)
        self.neuron = ALIF(self.n_rec, dt=dt, tau=tau, tau_a=tau_a, beta=beta)
        self.readout = readout
        self.read_mask = (nnx.Variable(jnp.asarray((sign > 0).astype(np.float32)))
                          if readout == "exc" else None)
        self.out = LeakyReadout(self.n_rec, self.n_out, tau=tau_out, dt=dt, rngs=rngs)
        if self.read_mask is not None:
            w = np.asarray(self.out.W[...])
            self.out.W[...] = jnp.asarray(w * (sign > 0)[:, None], w.dtype)
        self.spk = HiddenState(jnp.zeros((self.n_rec,), default_float()))

    def __call__(self, x):
        current = self.inp(x) + self.rec(self.spk[...])
        z = self.neuron(current)
        self.spk[...] = z
        return self.out(z * self.read_mask[...] if self.read_mask is not None else z)


def ei_network(n_in, n_out, seed=0, dt=1.0, **options) -> EINetwork:
    """Build an ``EINetwork`` from JSON-friendly ``options`` (fields of
    ``EINetworkOptions``; missing keys take their defaults). ``seed`` draws the
    weights; the connectivity is drawn from ``conn_seed``."""
    return EINetwork(n_in, n_out, rngs=nnx.Rngs(int(seed)), dt=dt,
                     **resolve(EINetworkOptions, options))


def record_spikes(model: EINetwork, params, xs):
    """Spikes (T, B, n_rec) of ``model`` with ``params`` (e.g. a learner
    state's ``params``) on inputs ``xs`` (T, B, n_in), from the initial
    hidden state. The step is the model's own: the spikes are its ``spk``
    hidden state after each step."""
    import jax

    from brainscale.model import from_nnx

    step = from_nnx(model)
    _, h0 = step.init(None, None)

    def body(h, x):
        h, _ = jax.vmap(step.apply, in_axes=(None, 0, 0))(params, h, x)
        return h, h["spk"]

    B = jnp.shape(xs)[1]
    hb = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,) + jnp.shape(a)), h0)
    run = jax.jit(lambda hb, xs: jax.lax.scan(body, hb, xs)[1])
    return run(hb, jnp.asarray(xs))
