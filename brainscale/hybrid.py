"""Bilevel meta-learning of hybrid plasticity (Wu et al., Nat. Commun. 2022).

The global weights ``w`` (every gradient-trained parameter) are trained by
the learner on the training split of an episode; the meta-parameters
``theta`` -- each HP rule's (alpha, beta, eta, gamma), kept in its state
(``transforms.plasticity.rules.hybrid``) -- by the gradient of the validation loss
through that training:

    w'(theta)   = inner(w, theta; training split)       (one sequence per inner step)
    theta      <- theta - meta_opt(d L_val(w'(theta), theta) / d theta)

``first_order=True`` drops the second-order terms: the gradient-trained
weights after the inner steps are taken as constants, so the outer
gradient reaches theta only through the local weights H (and alpha H).
The bilevel step differentiates through the learner's own update: a
second-order gradient through the online learner, so its optimizer must be
differentiable there: give Adam ``eps_root > 0`` (``sqrt`` of a zero second
moment has no derivative). Every function is pure over the learner's state
and an optax state.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from transforms.plasticity.rules.hybrid import HPState


def hp_paths(state) -> tuple[str, ...]:
    """The weight paths whose rule is an HP rule."""
    return tuple(p for p, s in state.local.items() if isinstance(s, HPState))


def new_episode(state):
    """Every HP rule's H, and the plastic weight alpha H, back to zero."""
    paths = hp_paths(state)
    local = dict(state.local)
    for p in paths:
        local[p] = local[p]._replace(H=jnp.zeros_like(local[p].H))

    def fix(path, leaf):
        return jnp.zeros_like(leaf) if "params" + jax.tree_util.keystr(path) in paths else leaf
    return state._replace(params=jax.tree_util.tree_map_with_path(fix, state.params),
                          local=local)


def get_theta(state) -> dict:
    paths = hp_paths(state)
    if not paths:
        raise ValueError("no meta-parameters: the learner has no HP rule (hp_local)")
    return {p: state.local[p].theta for p in paths}


def set_theta(state, theta: dict):
    """``state`` with the HP rules' theta replaced and each plastic weight
    set to the new ``alpha H``."""
    local = dict(state.local)
    for p, th in theta.items():
        local[p] = local[p]._replace(theta=th)

    def fix(path, leaf):
        p = "params" + jax.tree_util.keystr(path)
        return (theta[p].alpha * local[p].H).astype(leaf.dtype) if p in theta else leaf
    return state._replace(params=jax.tree_util.tree_map_with_path(fix, state.params),
                          local=local)


def inner(learner, state, batches):
    """``train_sequence`` over each (xs, ys) of ``batches`` in turn."""
    for xs, ys in batches:
        state, _ = learner.train_sequence(state, xs, ys)
    return state


def evaluate_loss(learner, state, xs, ys):
    """Mean loss over the labelled steps (label >= 0) of ``xs``, weights
    held (H as trained)."""
    out = learner.predict(state, xs)
    losses = jax.vmap(jax.vmap(learner.loss))(out, ys)
    mask = (ys >= 0).astype(losses.dtype)
    return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class MetaState(NamedTuple):
    theta: Any
    opt_state: Any


class Bilevel:
    """``init(state) -> MetaState``; ``step(state, meta, train, val)`` ->
    (trained state, new MetaState, metrics). ``train`` is a list of
    (xs, ys) sequences (the inner steps), ``val`` one (xs, ys). Each step
    starts a new episode (H = 0) unless ``new_episodes=False``."""

    def __init__(self, learner, meta_optimizer, first_order: bool = False,
                 new_episodes: bool = True):
        self.learner, self.opt = learner, meta_optimizer
        self.first_order, self.new_episodes = bool(first_order), bool(new_episodes)

    def init(self, state) -> MetaState:
        theta = get_theta(state)
        return MetaState(theta, self.opt.init(theta))

    def meta_loss(self, theta, state, train, val):
        """L_val after the inner steps, as a function of theta; also the
        trained state."""
        s = set_theta(new_episode(state) if self.new_episodes else state, theta)
        s = inner(self.learner, s, train)
        if self.first_order:
            plastic = set(hp_paths(s))
            s = s._replace(params=jax.tree_util.tree_map_with_path(
                lambda path, a: a if "params" + jax.tree_util.keystr(path) in plastic
                else jax.lax.stop_gradient(a), s.params))
        return evaluate_loss(self.learner, s, *val), s

    def step(self, state, meta: MetaState, train, val):
        (loss, trained), g = jax.value_and_grad(self.meta_loss, has_aux=True)(
            meta.theta, state, train, val)
        updates, opt_state = self.opt.update(g, meta.opt_state, meta.theta)
        theta = jax.tree.map(lambda a, u: a + u, meta.theta, updates)
        return (set_theta(trained, theta), MetaState(theta, opt_state),
                {"val_loss": loss, "meta_grad_norm": _norm(g)})


def _norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree_util.tree_leaves(tree)))


__all__ = ["hp_paths", "new_episode", "get_theta", "set_theta", "inner", "evaluate_loss",
           "MetaState", "Bilevel"]
