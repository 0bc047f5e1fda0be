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


__all__ = ["HPTheta", "HPState", "hp_update", "hp_local"]
