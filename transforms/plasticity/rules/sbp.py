"""Self-backpropagation (SBP) of synaptic modifications (Zhang et al., Sci.
Adv. 2021), as local rules on the graph IR (W laid out (I, O): pre i, post j).

A modification ``dW`` of a population's synapses (from any base rule: the
contrastive two-phase rule, STDP, a local gradient) is split into its LTP and
LTD parts, ``P = max(dW, 0)``, ``D = min(dW, 0)``, and spreads

- presynaptic-laterally, to the other output synapses of the same
  presynaptic neuron:  ``S_pre[i, j] = lam_pre f mean_j' dW[i, j']``;
- postsynaptic-laterally, LTD only, to the other input synapses of the same
  postsynaptic neuron:  ``S_post[i, j] = lam_post f mean_i' D[i', j]``;
- backward, to the input synapses of the presynaptic neurons: the layer
  below (whose neurons i are this layer's inputs) is scaled per neuron by

      T_bp[i] = 1 + lam_bp f n(rho sum_j P[i, j]),     n(v) = v / sum(v)

  i.e. ``W_below[:, i] <- T_bp[i] W_below[:, i]``: a neuron whose output
  synapses were potentiated strengthens its own input synapses, in
  proportion to its share of the layer's LTP. (With ``n`` normalising by
  the sum, ``rho`` cancels; it is kept so the authors' parameter set maps
  one to one.) Authors' values: lam_pre 1, lam_post 0.5, lam_bp 1, f 0.2,
  rho 0.1.

``sbp_output(base)`` adds the lateral spreads to a base rule on the output
synapses; ``sbp_backward()`` is the rule on the input synapses of the hidden
neurons: the engine hands it this step's dW of their output synapses
(``LocalSignals.downstream``). Kept per synapse: nothing beyond the base
rule's state; per neuron: the summed LTP of its output synapses.

The two-phase contrastive base rule of the paper's SNN is
``brainscale.models.sbp_snn.contrastive``.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from transforms.plasticity.engine import LocalSignals, Rule

DEFAULTS = dict(lam_pre=1.0, lam_post=0.5, lam_bp=1.0, f=0.2, rho=0.1)


def lateral_spread(dw, lam_pre=1.0, lam_post=0.5, f=0.2):
    """``dw`` plus its presynaptic-lateral spread (LTP and LTD) and its
    postsynaptic-lateral spread (LTD only)."""
    pre = lam_pre * f * jnp.mean(dw, axis=1, keepdims=True)
    post = lam_post * f * jnp.mean(jnp.minimum(dw, 0.0), axis=0, keepdims=True)
    return dw + pre + post


def backward_factor(dws_above, lam_bp=1.0, f=0.2, rho=0.1):
    """``T_bp`` per presynaptic neuron of the layer(s) above, from their
    modifications ``dws_above`` (each (I, O)); 1 where nothing potentiated."""
    ltp = sum(jnp.sum(jnp.maximum(dw, 0.0), axis=1) for dw in dws_above) * rho
    total = jnp.sum(ltp)
    share = jnp.where(total > 0, ltp / jnp.where(total > 0, total, 1.0), 0.0)
    return 1.0 + lam_bp * f * share


def sbp_output(base: Rule, lam_pre: float = DEFAULTS["lam_pre"],
               lam_post: float = DEFAULTS["lam_post"], f: float = DEFAULTS["f"]) -> Rule:
    """``base`` (e.g. ``stdp(...)`` or ``delta(...)``) with the lateral
    spreads of SBP added to its modification."""
    def update(state, sig: LocalSignals):
        dw, state = base.update(state, sig)
        return lateral_spread(dw, lam_pre, lam_post, f), state

    return base._replace(update=update)


def sbp_backward(lam_bp: float = DEFAULTS["lam_bp"], f: float = DEFAULTS["f"],
                 rho: float = DEFAULTS["rho"], cap: float | None = 2.0) -> Rule:
    """The input synapses of hidden neurons: scaled by ``T_bp`` from the
    plasticity of the neurons' output synapses (this step's, all local-rule
    ops fed by them).

    ``cap`` is the stability constraint: T_bp >= 1 always, and a neuron that
    keeps winning LTP would grow its input synapses without bound, so a
    neuron's input-weight norm is held at most ``cap`` times its initial
    norm (``T_bp_j <- min(T_bp_j, max(1, cap |w_j|_0 / |w_j|))``); None
    applies the bare equation. Kept: the initial norm per hidden neuron."""
    def init(w, x_shape, post_shape, batch):
        return jnp.linalg.norm(w, axis=0)

    def update(norm0, sig: LocalSignals):
        t_bp = backward_factor(sig.downstream, lam_bp, f, rho)
        if cap is not None:
            room = cap * norm0 / jnp.maximum(jnp.linalg.norm(sig.w, axis=0), 1e-30)
            t_bp = jnp.minimum(t_bp, jnp.maximum(room, 1.0))
        return sig.w * (t_bp - 1.0)[None, :], norm0

    return Rule(init, update, needs_post=False, reset=lambda norm0: norm0,
                needs_downstream=True)


def delta(eta: float, tau_pre: float = 20.0, tau_post: float = 20.0, dt: float = 1.0) -> Rule:
    """A supervised local gradient on output synapses (the SBP paper's
    "artificial local gradient" option): with pre and post rate traces
    ``x_t = a x_{t-1} + (1 - a) s_t``, per labelled step

        dW = eta / B * x_pre^T (onehot(target) - x_post)

    the gradient of ``|onehot - x_post|^2 / 2`` through a linear post rate.
    Steps with target -1 (or None) change nothing. Kept: one trace per pre
    and post neuron and sample."""
    ap, aq = math.exp(-dt / tau_pre), math.exp(-dt / tau_post)

    def init(w, x_shape, post_shape, batch):
        return (jnp.zeros((batch,) + tuple(x_shape), w.dtype),
                jnp.zeros((batch,) + tuple(post_shape), w.dtype))

    def update(state, sig: LocalSignals):
        pre = ap * state[0] + (1 - ap) * sig.x
        post = aq * state[1] + (1 - aq) * sig.post
        if sig.target is None:
            return jnp.zeros_like(sig.w), (pre, post)
        t = jnp.asarray(sig.target)
        onehot = (t[:, None] == jnp.arange(post.shape[-1])[None, :]).astype(post.dtype)
        err = (onehot - post) * (t >= 0)[:, None]
        return eta * pre.T @ err / pre.shape[0], (pre, post)

    return Rule(init, update)


__all__ = ["DEFAULTS", "lateral_spread", "backward_factor", "sbp_output",
           "sbp_backward", "delta"]
