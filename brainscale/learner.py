"""The online learner: ``bs.online(model, algorithm, optimizer)``.

A ``Learner`` holds only static configuration; all state is a ``LearnerState``
pytree, and every method is a pure, jitted function of it, so learners work
under ``jax.jit``, ``jax.vmap`` and sharding like optax transforms do. The
model is written for one sample; the learner adds the batch axis B (and the
time axis T for sequences):

    learner = bs.online(model, algorithm="es_d_rtrl", optimizer=optax.adam(1e-3))
    state = learner.init(rng, x_batch)                   # x_batch: (B, ...)
    state, out, metrics = learner.step(state, x_t, y_t)  # online: learn every step
    grads, losses = learner.sequence_grad(state, xs, ys) # (T, B, ...) via lax.scan
    state, metrics = learner.train_sequence(state, xs, ys)

Objective of a sequence: the mean over time of the batch-mean per-step loss.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from brainscale import donation
from brainscale.bptt_sequence import bptt_sequence
from brainscale.online_sequence import online_sequence
from brainscale.input_checks import check_batch_axis, checked, per_sample_init
from brainscale.losses import cross_entropy
from brainscale.model import as_step_model
from transforms.const_args import jit_const_args
from transforms.errors import ShapeMismatchError
from transforms.ir.analysis import analyse
from transforms.ir.trace import trace_step
from transforms.learning import algorithms
from transforms.learning.in_place import after
from transforms.learning.readout_paths import readout_paths
from transforms.learning.signals import (linearized_cut, param_grads, readout_signal,
                                         step_signals)
from transforms.plasticity import terms as local_terms


class LearnerState(NamedTuple):
    """Everything that changes during learning, as one pytree (B: batch)."""
    params: Any
    opt_state: Any
    hidden: Any          # batched hidden state, leaves (B, ...)
    traces: Any          # the algorithm's eligibility traces (empty for BPTT)
    hidden0: Any         # per-sample initial hidden state, used by reset
    local: Any = ()      # the local rules' states, {weight path: state}


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


class Learner:
    """An online learner for one model and algorithm; make it with ``bs.online``.

    It holds static configuration and a compile cache only; all state is a
    ``LearnerState`` and every call is a pure, jitted function of it. Shapes:
    the model maps one sample ``x`` (...) to ``out`` (n_out,); the calls take
    ``x`` (B, ...) per step or ``xs`` (T, B, ...) per sequence, and labels
    ``y`` (B,) / ``ys`` (T, B) for ``cross_entropy`` (-1: no loss at that step).

        learner = bs.online(model, "es_d_rtrl", optimizer=optax.adam(1e-3))
        state = learner.init(jax.random.PRNGKey(0), xs[0])       # xs: (T, B, n_in)
        state, metrics = learner.train_sequence(state, xs, ys)   # ys: (T, B)
        outs = learner.predict(state, xs)                        # (T, B, n_out)
    """

    def __init__(self, model, algorithm="es_d_rtrl",
                 optimizer: optax.GradientTransformation | None = None,
                 loss: Callable = cross_entropy, readout_paths: bool = True,
                 skip_silent: bool = True, rules: dict | None = None, check: bool = True,
                 donate: bool = False, **options):
        if isinstance(algorithm, str):
            algorithm = algorithms.from_name(algorithm, **options)
        elif options:
            raise ValueError(f"options {sorted(options)} belong to the algorithm value: "
                             f"pass e.g. bs.{algorithm.name}(...) with them")
        self.model = as_step_model(model)
        self.algorithm = algorithm
        self.optimizer = optimizer if optimizer is not None else optax.sgd(1e-2)
        self.loss = loss
        self.readout_paths = readout_paths
        self.skip_silent = skip_silent
        self.rules = dict(rules or {})
        if self.rules and not algorithm.online:
            raise ValueError("local rules run online, beside an online algorithm: use "
                             "'es_d_rtrl' or 'd_rtrl' with rules=")
        self.check = check
        self.donate = donate
        self.checked_shapes: dict = {}  # the step's output shape per input shapes (check)
        self._graphs: dict = {}       # compile cache, by shapes (like jax.jit's)
        self._fresh: dict = {}        # init's compiled state builder, by graph and batch
        self._reset_jitted = jit_const_args(self._reset, donate_argnums=0 if donate else ())

    # -- compilation -------------------------------------------------------------
    @property
    def graph(self):
        """The graph IR when the learner was compiled for one set of shapes;
        ``graph_for(example_x)`` in general."""
        if len(self._graphs) != 1:
            raise RuntimeError("the learner was compiled for "
                               f"{'no' if not self._graphs else 'several'} input shapes: "
                               "use learner.graph_for(example_x)")
        return next(iter(self._graphs.values()))

    def graph_for(self, example_x):
        """The graph IR for inputs like ``example_x`` (batch axis first),
        from the model's initial parameters: what the online learners do
        with the step, whichever algorithm this learner runs."""
        params, hidden0, x0 = per_sample_init(self, jax.random.PRNGKey(0), example_x)
        params, hidden0 = jax.tree.map(_strong, (params, hidden0))
        return self.compile(params, hidden0, x0)

    def compile(self, params, hidden, x):
        """Graph IR for per-sample ``hidden`` and ``x`` (cached by shape)."""
        spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
        p, h, xx = (jax.tree.map(spec, t) for t in (params, hidden, x))
        key = tuple((jax.tree_util.tree_structure(t), tuple(_leaves(t))) for t in (p, h, xx))
        if key not in self._graphs:
            graph = analyse(trace_step(self.model.apply, p, h, xx), self.model.elementwise)
            if self.rules:
                graph = local_terms.resolve(graph, self.rules)
            if self.algorithm.online:
                graph = self.algorithm.prepare(graph)
                found = readout_paths(graph) if self.readout_paths else []
                extra = getattr(self.algorithm, "extra_paths", lambda g, f: [])(graph, found)
                if found or extra:
                    graph = dataclasses.replace(graph, readout_paths=found + extra)
            self._graphs[key] = graph
        return self._graphs[key]

    def _graph_of(self, state, x, time_axis=False):
        check_batch_axis(state, x, time_axis)
        lead = 1 if time_axis else 0
        per = lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[lead + 1:], jnp.result_type(a))
        return self.compile(state.params, state.hidden0, jax.tree.map(per, x))


    # -- state ---------------------------------------------------------------------
    def init(self, rng, example_x) -> LearnerState:
        """The initial state for batches shaped like ``example_x``.

        ``example_x``: one time step of a batch, (B, ...), e.g. ``xs[0]``; the
        model's ``init`` gets its first sample, (...). Returns parameters,
        optimizer state, hidden state with leaves (B, ...), zero traces and
        the local rules' states. B is fixed from here on.

            state = learner.init(jax.random.PRNGKey(0), xs[0])
        """
        params, hidden0, x0 = per_sample_init(self, rng, example_x)
        params, hidden0 = jax.tree.map(_strong, (params, hidden0))
        B = _batch_size(example_x)
        if not self.algorithm.online:     # jax.grad of a scan: no analysis needed
            trace_step(self.model.apply, params, hidden0, x0)     # checks the step's pytrees
            graph = None
        else:
            graph = self.compile(params, hidden0, x0)
        key = (id(graph), B)
        if key not in self._fresh:
            self._fresh[key] = jit_const_args(functools.partial(self._fresh_state, graph, B))
        opt_state, hidden, traces, local = self._fresh[key](params, hidden0)
        return LearnerState(params, opt_state, hidden, traces, hidden0, local)

    def _fresh_state(self, graph, batch, params, hidden0):
        """Optimizer state, hidden state broadcast to the batch, zero traces
        and the local rules' states, as one compiled program (eagerly, each
        array of a new shape would compile its own)."""
        hidden = jax.tree.map(lambda h: jnp.broadcast_to(h, (batch,) + jnp.shape(h)), hidden0)
        if graph is None:
            return self.optimizer.init(params), hidden, {}, ()
        return (self.optimizer.init(params), hidden, self._zero_traces(graph, batch, hidden0),
                local_terms.init_states(graph, self.rules, _leaves(params), batch))

    def _zero_traces(self, graph, batch, hidden0):
        floats = [h for h in _leaves(hidden0) if jnp.issubdtype(jnp.result_type(h), jnp.inexact)]
        dtype = jnp.result_type(*floats) if floats else jnp.float32
        dtype = jnp.real(jnp.zeros((), dtype)).dtype     # a complex state has real slots
        return self.algorithm.init(graph, batch, dtype)

    def reset(self, state: LearnerState) -> LearnerState:
        """``reset(state) -> state``: hidden state back to its initial value,
        traces and the local rules' activity traces to zero; weights kept
        (consumes ``state`` when the learner donates)."""
        if self.donate:
            donation.check_live(state, "reset: ")
            state = donation.unshared(state)
        return self._reset_jitted(state)

    def _reset(self, state: LearnerState) -> LearnerState:
        """Hidden state back to its initial value, traces (and the local rules'
        activity traces) to zero."""
        B = _batch_size(state.hidden)
        hidden = jax.tree.map(lambda h: jnp.broadcast_to(h, (B,) + jnp.shape(h)), state.hidden0)
        return state._replace(hidden=hidden, traces=jax.tree.map(jnp.zeros_like, state.traces),
                              local=local_terms.reset_states(self.rules, state.local))

    # -- one online step -----------------------------------------------------------
    def _online_terms(self, graph, params, hidden, traces, x, y, local):
        """Signals, this step's weight-gradient terms, the advanced traces and
        the local rules' updates and states."""
        algo = self.algorithm
        p, h, xx = _leaves(params), _leaves(hidden), _leaves(x)
        sig = step_signals(graph, self.loss, p, h, xx, y, extra=local_terms.extra_vars(graph),
                           skip=local_terms.local_params(graph), feedback=graph.feedback)
        slopes = local_terms.post_slopes(graph, self.rules, p, h, xx)
        dws, local = local_terms.updates(graph, self.rules, p, sig.extra, local, None, slopes,
                                         y, sig.hidden)
        weights = getattr(algo, "path_weights", lambda g, t: None)(graph, traces)
        args = (graph, traces, sig.signal,
                readout_signal(graph, p, sig.signal, graph.feedback, weights), sig.x, sig.dy)
        if self.skip_silent:  # no loss at this step: every gradient term is exactly zero
            live = jnp.any(jnp.stack([jnp.any(s != 0)
                                      for s in list(sig.signal) + list(sig.dy.values())]))
            shapes = jax.eval_shape(lambda: algo.contract(*args))
            g_weff = jax.lax.cond(live, lambda: algo.contract(*args),
                                  lambda: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                                                       shapes))
        else:
            g_weff = algo.contract(*args)

        def per_sample(fn, tr):
            def one(hh, xv, ys, xs, tr1):
                return fn(tr1, linearized_cut(graph, p, hh, xv, ys), graph.view.split(hh), ys, xs)
            return jax.vmap(one)(h, xx, sig.y, sig.x, tr)

        traces = after(algo.advance(graph, traces, per_sample, sig.x), g_weff)  # in place
        return sig, g_weff, traces, dws, local

    def _step(self, state: LearnerState, x, y):
        """``step(state, x, y) -> (state, out, metrics)``: one online time step.

        ``x`` (B, ...), ``y`` (B,) (-1: no loss at this step): the forward
        step, the trace update and one optimizer update, so memory stays flat
        however many steps run. ``out`` (B, ...) is the model's output;
        ``metrics``: ``loss``, ``grad_norm``. Online algorithms only.

            for t in range(T):
                state, out, metrics = learner.step(state, xs[t], ys[t])
        """
        if not self.algorithm.online:
            raise ValueError(f"{self.algorithm.name} needs the whole sequence: use "
                             "sequence_grad or train_sequence, or an online algorithm for "
                             "step()")
        graph = self._graph_of(state, x)
        sig, g_weff, traces, dws, local = self._online_terms(
            graph, state.params, state.hidden, state.traces, x, y, state.local)
        p = _leaves(state.params)
        grads = _unflatten_like(state.params, param_grads(graph, p, sig.g_immediate, g_weff))
        params, opt_state = self._apply(state, grads, dws)
        hidden = _unflatten_like(state.hidden, sig.hidden)
        metrics = {"loss": sig.loss, "grad_norm": _norm(grads)}
        return state._replace(params=params, opt_state=opt_state, hidden=hidden,
                              traces=traces, local=local), sig.out, metrics

    step = checked(_step, time_axis=False, returns_state=True)

    def _apply(self, state, grads, dws):
        """The optimizer's update of the gradient-trained weights; the weights
        under a local rule get their rule's ``dw`` instead."""
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if dws:
            old = _leaves(state.params)
            new = _leaves(params)
            for i, dw in dws.items():
                new[i] = old[i] + dw
            params = _unflatten_like(state.params, new)
        return params, opt_state

    # -- sequences -----------------------------------------------------------------
    def _sequence(self, state, xs, ys):
        if not self.algorithm.online:
            return bptt_sequence(self, state, xs, ys)
        graph = self._graph_of(state, xs, time_axis=True)
        return online_sequence(self, graph, state, xs, ys)

    def _sequence_grad(self, state: LearnerState, xs, ys):
        """``sequence_grad(state, xs, ys) -> (grads, losses)``: the gradient of
        the mean per-step loss over a sequence; nothing is updated.

        ``xs`` (T, B, ...), ``ys`` (T, B); starts from the hidden state and
        traces in ``state`` (no reset). ``grads`` is shaped like
        ``state.params``; ``losses`` (T,) is the batch-mean loss per step.

            grads, losses = learner.sequence_grad(learner.reset(state), xs, ys)
        """
        grads, losses, _, _, _ = self._sequence(state, xs, ys)
        return grads, losses

    sequence_grad = checked(_sequence_grad)

    def _train_sequence(self, state: LearnerState, xs, ys):
        """``train_sequence(state, xs, ys) -> (state, metrics)``: reset, the
        gradient over the sequence, one optimizer update.

        ``xs`` (T, B, ...), ``ys`` (T, B). ``metrics``: ``loss`` (the mean over
        the sequence) and ``grad_norm``; the new state holds the hidden state
        at the sequence's end.

            state, metrics = learner.train_sequence(state, xs, ys)
        """
        state = self._reset(state)
        grads, losses, hidden, traces, (dws, local) = self._sequence(state, xs, ys)
        params, opt_state = self._apply(state, grads, dws)
        metrics = {"loss": jnp.mean(losses), "grad_norm": _norm(grads)}
        return state._replace(params=params, opt_state=opt_state, hidden=hidden,
                              traces=traces, local=local), metrics

    train_sequence = checked(_train_sequence, returns_state=True)

    def _predict(self, state: LearnerState, xs):
        """``predict(state, xs) -> outs``: the model's outputs (T, B, ...) over
        ``xs`` (T, B, ...) from a reset hidden state; no learning.

            accuracy = (learner.predict(state, xs)[-1].argmax(-1) == ys[-1]).mean()
        """
        check_batch_axis(state, xs, time_axis=True)
        hidden = self._reset(state).hidden
        step = jax.vmap(lambda h, x: self.model.apply(state.params, h, x))
        return jax.lax.scan(lambda h, x: step(h, x), hidden, xs)[1]

    predict = checked(_predict)


def _strong(a):
    """Drop weak typing so that updated leaves keep the cache key of the jit."""
    a = jnp.asarray(a)
    return jax.lax.convert_element_type(a, a.dtype) if getattr(a, "weak_type", False) else a


def _norm(tree):
    """The global 2-norm. Behind an optimisation barrier: XLA would
    otherwise share the squares with the optimizer's (Adam's second moment)
    and write them out, a copy of every gradient, instead of summing them
    as they are formed."""
    tree = jax.lax.optimization_barrier(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in _leaves(tree)))


def _batch_size(tree) -> int:
    leaves = _leaves(tree)
    if not leaves:
        raise ShapeMismatchError("no batched leaf to read the batch size from",
                                 hint="give example inputs with a leading batch axis")
    return int(jnp.shape(leaves[0])[0])


def _unflatten_like(tree, leaves):
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), list(leaves))


def online(model, algorithm="es_d_rtrl", optimizer=None, loss=cross_entropy,
           readout_paths: bool = True, skip_silent: bool = True, rules: dict | None = None,
           check: bool = True, donate: bool = False, **options) -> Learner:
    """Compile ``model`` (an nnx module, a brainstate module or a
    ``StepModel``) into an online ``Learner``.

    The model is one time step for one sample, ``x`` (...) -> ``out``
    (n_out,); the learner's calls take batches, ``x`` (B, ...) per step and
    ``xs`` (T, B, ...) per sequence, with labels (B,) / (T, B) for the default
    ``cross_entropy`` loss (-1: no loss at that step).

        learner = bs.online(model, bs.es_d_rtrl(decay=0.9), optimizer=optax.adam(1e-3))
        state = learner.init(jax.random.PRNGKey(0), xs[0])       # xs: (T, B, n_in)
        state, metrics = learner.train_sequence(state, xs, ys)   # ys: (T, B)

    ``algorithm``: a value, ``bs.es_d_rtrl(decay=0.9, window=None)`` (O(B N)
    memory), ``bs.d_rtrl(trace_dtype=None)`` (O(B N^2)),
    ``bs.e_prop(feedback="random", feedback_seed=0)`` (D-RTRL's traces with
    the output error broadcast back; the default ``feedback="symmetric"``
    equals D-RTRL), ``bs.ostl()`` (D-RTRL on feed-forward layers; recurrent
    weights refused), ``bs.bptt()`` (exact reference, memory grows with T) or
    ``bs.tbptt(k=50)`` (gradients through chunks of k steps; memory grows with k);
    ``bs.low_rank_d_rtrl(rank=2)`` (D-RTRL's per-sample traces cut to their
    best rank r each step: ES-D-RTRL's memory, the factors chosen by the trace);
    or its name with the algorithm's options as keywords
    (``"es_d_rtrl", decay=0.8``), suffixed forms included (``"tbptt:50"``,
    ``"es_d_rtrl:adaptive"``: ``transforms.learning.algorithm_specs``). An option the algorithm does not have is an
    error. ``optimizer``: any optax transformation (default
    ``optax.sgd(1e-2)``). ``loss``: per sample and step,
    ``loss(out, target)`` -> a scalar (``bs.losses``). ``readout_paths``
    carries the loss's temporal path through linear leaky readouts with
    filtered traces (off: the paper's plain algorithms). ``skip_silent``
    skips the trace contraction on steps whose learning signal is zero (e.g.
    outside a task's loss window). ``rules`` ({weight path: ``bs.rules``
    rule}) puts those weights under local plasticity: no gradient for them,
    their rule's update instead (every step in ``step``; summed over the
    sequence in ``train_sequence``). ``check`` validates each call's inputs and labels first
    (``brainscale.input_checks``: shapes always, NaN / inf and labels outside
    [-1, n_classes) on concrete arrays); False skips it. ``donate``: ``step``,
    ``train_sequence`` and ``reset`` write the new state into the buffers of
    the one they are given, which is consumed (``brainscale.donation``): for
    large models the old and new state never coexist. Off by default: every
    state stays usable, as with optax.
    """
    return Learner(model, algorithm, optimizer, loss, readout_paths, skip_silent, rules,
                   check, donate, **options)
