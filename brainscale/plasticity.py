"""Local plasticity on any model the compiler accepts.

    net = bs.plasticity(model, rules={"params['fc']['kernel']": stdp(...)})
    state = net.init(rng, x_batch)
    state, out, dws = net.step(state, x_t, modulator=None, target=None)   # one step
    state, outs = net.run(state, xs, modulators=None, targets=None)       # scan over T
    state = net.reset(state)                                              # new sequence
    state = net.for_batch(state, 100)                                     # another batch size

Each rule (``transforms.plasticity.rules``) updates the weight of one op from its
presynaptic input, its output current and the postsynaptic activity the
compiler finds in the graph; the update is added to the weight after the
step. Everything is a pure function of a ``PlasticityState`` pytree, so
``jax.jit`` / ``jax.vmap`` apply.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from transforms.plasticity.terms import (add, extra_vars, init_states, post_slopes, reset_states,
                                    resolve, updates)
from brainscale.model import as_step_model
from transforms.ir.analysis import analyse
from transforms.plasticity.engine import Rule
from transforms.learning.signals import run_step
from transforms.ir.trace import trace_step
from transforms.const_args import jit_const_args


class PlasticityState(NamedTuple):
    params: Any
    hidden: Any              # (B, ...) leaves
    rules: Any               # {op path: rule state}
    hidden0: Any             # per-sample initial hidden state


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


class Plasticity:
    def __init__(self, model, rules: dict[str, Rule]):
        if not rules:
            raise ValueError("give at least one rule: {param path: rule}")
        self.model = as_step_model(model)
        self.rules = dict(rules)
        self.graph = None
        self.step = jit_const_args(self._step)      # large closed-over arrays as arguments
        self.run = jit_const_args(self._run)
        self.reset = jit_const_args(self._reset)

    def _compile(self, params, hidden, x):
        spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
        graph = analyse(trace_step(self.model.apply, *(jax.tree.map(spec, t)
                                                       for t in (params, hidden, x))),
                        self.model.elementwise)
        graph = resolve(graph, self.rules)
        self.graph = graph
        return graph

    def init(self, rng, example_x) -> PlasticityState:
        """Parameters, batched hidden state and each rule's state;
        ``example_x`` carries the batch axis first."""
        x0 = jax.tree.map(lambda a: jnp.asarray(a)[0], example_x)
        params, hidden0 = self.model.init(rng, x0)
        graph = self._compile(params, hidden0, x0)
        B = jax.tree_util.tree_leaves(example_x)[0].shape[0]
        hidden = jax.tree.map(lambda h: jnp.broadcast_to(h, (B,) + jnp.shape(h)), hidden0)
        states = init_states(graph, self.rules, _leaves(params), B)
        return PlasticityState(params, hidden, states, hidden0)

    def _reset(self, state: PlasticityState) -> PlasticityState:
        """A new sequence: hidden state back to its initial value, the rules'
        activity traces to zero (``Rule.reset`` where a rule keeps more)."""
        B = jax.tree_util.tree_leaves(state.hidden)[0].shape[0] if _leaves(state.hidden) else 0
        hidden = jax.tree.map(lambda h: jnp.broadcast_to(h, (B,) + jnp.shape(h)), state.hidden0)
        return state._replace(hidden=hidden, rules=reset_states(self.rules, state.rules))

    def for_batch(self, state: PlasticityState, batch: int) -> PlasticityState:
        """The state for ``batch`` samples, e.g. to evaluate on a set of
        another size: hidden state from its initial value, the rules' states
        initialised anew from the current weights."""
        hidden = jax.tree.map(lambda h: jnp.broadcast_to(h, (batch,) + jnp.shape(h)),
                              state.hidden0)
        rules = init_states(self.graph, self.rules, _leaves(state.params), batch)
        return state._replace(hidden=hidden, rules=rules)

    def _step(self, state: PlasticityState, x, modulator=None, target=None):
        graph = self.graph
        p_leaves, p_tree = jax.tree_util.tree_flatten(state.params)
        h_leaves, h_tree = jax.tree_util.tree_flatten(state.hidden)
        h_new, out, _, _, rec = jax.vmap(
            lambda h, xx: run_step(graph, p_leaves, h, xx, extra=extra_vars(graph)))(
                h_leaves, _leaves(x))
        slopes = post_slopes(graph, self.rules, p_leaves, h_leaves, _leaves(x))
        dws, states = updates(graph, self.rules, p_leaves, rec, state.rules, modulator,
                              slopes, target, h_new)
        new = PlasticityState(jax.tree_util.tree_unflatten(p_tree, add(p_leaves, dws)),
                              jax.tree_util.tree_unflatten(h_tree, h_new), states,
                              state.hidden0)
        out = jax.tree_util.tree_unflatten(graph.traced.out_tree, out)
        by_path = {op.path: dws[op.param] for op in graph.ops if op.param in dws}
        return new, out, by_path

    def _run(self, state: PlasticityState, xs, modulators=None, targets=None):
        """Steps over the leading time axis of ``xs`` (with per-step
        ``modulators`` and ``targets`` if given); returns the final state and
        the outputs (T, B, ...)."""
        def body(s, inp):
            x, m, y = inp
            s, out, _ = self._step(s, x, m, y)
            return s, out
        return jax.lax.scan(body, state, (xs, modulators, targets))


def plasticity(model, rules: dict[str, Rule]) -> Plasticity:
    """A learner that applies local ``rules`` ({weight path: Rule}) to ``model``."""
    return Plasticity(model, rules)


__all__ = ["Plasticity", "PlasticityState", "plasticity"]
