"""The local half of hybrid plasticity (HP; Wu et al., Nat. Commun. 2022).

A synapse's weight is ``w_GP + alpha w_LP``: ``w_GP`` is trained by a
gradient learner, ``w_LP`` (here ``H``, laid out (I, O)) by a Hebbian rule
of presynaptic activity and a nonlinear function of the postsynaptic
potential with a sliding threshold, decay and bounds, every step:

    H <- clip(gamma H + mean_b[(beta * x_b) (x) tanh(u_b / v_th - eta)], -c, c)

with ``x`` the presynaptic spikes, ``u`` the postsynaptic membrane
potential after the step, ``beta`` a rate per presynaptic neuron, ``eta``
a sliding threshold per postsynaptic neuron and ``gamma`` a decay (used
clipped to [0, 1], so a meta-step cannot make H grow on its own). The
rule drives the plastic op of an HP synapse (``brainscale.nn.hp_synapse.
HPLinear``: ``y = x @ W + x @ A``), whose weight follows ``A = alpha H``:
its ``dw`` is ``alpha (H_new - H)``, so updates summed over a sequence (as
the online learners apply them) still give ``alpha H`` at its end.
The hyper-parameters theta = (alpha, beta, eta, gamma) and H live in the
rule's state, so a meta-gradient reaches them (``brainscale.hybrid``) and
no gradient learner trains alpha. Kept: H per synapse, theta per neuron.
``hp_assoc`` is the same module on a readout, driven by the label instead
of the potential: the class-centre memory the paper's few-shot analysis
describes.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from transforms.plasticity.engine import LocalSignals, Rule


class HPTheta(NamedTuple):
    alpha: jax.Array   # () the weight of the local part in the synapse
    beta: jax.Array    # (I,) learning rate per presynaptic neuron
    eta: jax.Array     # (O,) sliding threshold per postsynaptic neuron
    gamma: jax.Array   # () decay of H


def hp_update(H, x, u, theta: HPTheta, v_th, clip):
    """The new H from presynaptic spikes ``x`` (B, I) and postsynaptic
    potentials ``u`` (B, O)."""
    drive = jnp.einsum("bi,bo->io", theta.beta * x, jnp.tanh(u / v_th - theta.eta))
    gamma = jnp.clip(theta.gamma, 0.0, 1.0)       # a decay, whatever the meta-step did
    return jnp.clip(gamma * H + drive / x.shape[0], -clip, clip)


def _potential(state: dict, name: str):
    hits = [v for p, v in state.items() if p.endswith(f"['{name}']")]
    if len(hits) != 1:
        raise ValueError(f"hp_local: the driven neurons' state has {sorted(state)}; "
                         f"need exactly one leaf named {name!r} (the membrane potential)")
    return hits[0]


class HPState(NamedTuple):
    theta: HPTheta
    H: jax.Array       # (I, O) the local weight w_LP


def hp_local(alpha: float = 0.5, beta: float = 0.1, eta: float = 0.0, gamma: float = 0.9,
             v_th: float = 1.0, clip: float = 1.0, potential: str = "v") -> Rule:
    """The HP local rule on the plastic op of an HP synapse. ``alpha``,
    ``beta``, ``eta``, ``gamma``: the initial theta (beta and eta broadcast
    per neuron); ``potential`` names the driven neurons' membrane-potential
    state leaf. H persists across sequences (episodes reset it:
    ``brainscale.hybrid.new_episode``)."""
    def init(w, x_shape, post_shape, batch):
        theta = HPTheta(jnp.asarray(alpha, w.dtype), jnp.full(x_shape, beta, w.dtype),
                        jnp.full(post_shape, eta, w.dtype), jnp.asarray(gamma, w.dtype))
        return HPState(theta, jnp.zeros(w.shape, w.dtype))

    def update(state: HPState, sig: LocalSignals):
        u = _potential(sig.state, potential)
        H = hp_update(state.H, sig.x, u, state.theta, v_th, clip)
        return state.theta.alpha * (H - state.H), HPState(state.theta, H)

    return Rule(init, update, needs_post=False, reset=lambda state: state, needs_state=True)


def hp_assoc_update(H, x, target, theta: HPTheta, n_out, clip, normalize=True):
    """The new H of the label-associative form from presynaptic activity
    ``x`` (B, I) and labels ``target`` (B,) (-1: no label, only the decay)."""
    # x / |x|, with a derivative everywhere (a silent step has x = 0)
    unit = x * jax.lax.rsqrt(jnp.sum(x * x, -1, keepdims=True) + 1e-12) if normalize else x
    t = jnp.asarray(target)
    teach = (jax.nn.one_hot(t, n_out, dtype=x.dtype) - theta.eta) * (t >= 0)[:, None]
    drive = jnp.einsum("bi,bo->io", theta.beta * unit, teach)
    gamma = jnp.clip(theta.gamma, 0.0, 1.0)
    return jnp.clip(gamma * H + drive / x.shape[0], -clip, clip)


def hp_assoc(alpha: float = 1.0, beta: float = 0.1, eta: float = 0.0, gamma: float = 1.0,
             clip: float = 100.0, normalize: bool = True) -> Rule:
    """The HP local module on a readout, in the associative form the paper
    gives for few-shot learning: ``w_LP = sum_k y_k c_k^T``, so the local
    part scores a query by its similarity to each class's feature centre:

        H <- clip(gamma H + mean_b[(beta * x_b / |x_b|) (x) (onehot(t_b) - eta)], -c, c)

    ``x`` the presynaptic activity (unit length, a cosine embedding, unless
    ``normalize=False``), ``t`` the step's label (the learner's target;
    steps at -1 only decay H), ``beta`` (I,) a weight per feature (the
    metric), ``eta`` (O,) a push away from the other classes (a common eta
    shifts every class score alike: it matters only for unbalanced
    support sets), ``clip`` a safety bound (a saturated H loses the class
    centres). Same state and theta as ``hp_local``, so ``brainscale.hybrid``
    meta-learns theta and resets H per episode."""
    def init(w, x_shape, post_shape, batch):
        theta = HPTheta(jnp.asarray(alpha, w.dtype), jnp.full(x_shape, beta, w.dtype),
                        jnp.full(post_shape, eta, w.dtype), jnp.asarray(gamma, w.dtype))
        return HPState(theta, jnp.zeros(w.shape, w.dtype))

    def update(state: HPState, sig: LocalSignals):
        if sig.target is None:
            raise ValueError("hp_assoc needs the step's label: pass target= to the "
                             "plasticity network's step / run (an online learner passes "
                             "its labels itself)")
        H = hp_assoc_update(state.H, sig.x, sig.target, state.theta, state.H.shape[1], clip,
                            normalize)
        return state.theta.alpha * (H - state.H), HPState(state.theta, H)

    return Rule(init, update, needs_post=False, reset=lambda state: state)


__all__ = ["HPTheta", "HPState", "hp_update", "hp_local",
           "hp_assoc_update", "hp_assoc"]
