"""DECOLLE's local learning (Kaiser, Mostafa & Neftci 2020) as a local rule.

Every layer l has a fixed random readout ``Y = S G`` (G uniform in
[-a, a] / sqrt(n_l), never trained) and a local loss on Y (cross-entropy
with the step's label; no loss where the label is negative). All states
are detached and the layer's input is taken as given, so the gradient of
the local loss is immediate::

    delta = (dL/dY @ G^T) * dS/dU          (B, O)   dS/dU: the surrogate slope
    dL/dW = <P^T delta>                    (I, O)   P: the op's input (its trace)

and the weight moves by ``optimizer`` (optax, e.g. Adamax 3.6e-4 in the
paper) on that gradient, every step once ``burn_in`` steps have passed
(counted per run; the rule's state holds the count). Kept: G (O x n_out) and
the optimizer state; nothing grows with T.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from transforms.plasticity.engine import LocalSignals, Rule


def decolle(optimizer: optax.GradientTransformation, n_classes: int, *, scale: float = 1.0,
            burn_in: int = 0, seed: int = 0) -> Rule:
    def init(w, x_shape, post_shape, batch):
        n = int(post_shape[-1])
        G = jax.random.uniform(jax.random.PRNGKey(seed), (n, n_classes), w.dtype,
                               -scale, scale) / jnp.sqrt(n)
        return {"G": G, "opt": optimizer.init(w), "t": jnp.zeros((), jnp.int32)}

    def update(state, sig: LocalSignals):
        G = state["G"]
        logits = sig.post @ G
        label = jnp.asarray(sig.target)
        err = jax.nn.softmax(logits) - jax.nn.one_hot(jnp.maximum(label, 0), n_classes,
                                                       dtype=logits.dtype)
        err = jnp.where((label >= 0)[:, None], err, 0.0)
        delta = (err @ G.T) * sig.dpost
        grad = sig.x.T @ delta / sig.x.shape[0]
        upd, opt = optimizer.update(grad, state["opt"], sig.w)
        on = state["t"] >= burn_in
        dw = jnp.where(on, upd, jnp.zeros_like(upd))
        opt = jax.tree.map(lambda new, old: jnp.where(on, new, old), opt, state["opt"])
        return dw, {"G": G, "opt": opt, "t": state["t"] + 1}

    def reset(state):                     # a new sequence: burn in again
        return {**state, "t": jnp.zeros((), jnp.int32)}

    return Rule(init, update, needs_post=True, needs_dpost=True, reset=reset)


def local_readout(state, post):
    """The rule's fixed readout of a layer's spikes, Y = S G (for evaluation)."""
    return post @ state["G"]


__all__ = ["decolle", "local_readout"]
