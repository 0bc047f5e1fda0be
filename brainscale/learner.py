"""The online learner: ``bs.online(model, algorithm, optimizer)``.

A ``Learner`` holds only static configuration; all state is a ``LearnerState``
pytree, and every method is a pure, jitted function of it, so learners work
under ``jax.jit``, ``jax.vmap`` and sharding like optax transforms do.

    learner = bs.online(model, algorithm="es_d_rtrl", optimizer=optax.adam(1e-3))
    state = learner.init(rng, x_batch)                  # x_batch: (B, ...)
    state, out, metrics = learner.step(state, x_t, y_t)  # online: learn every step
    grads, losses = learner.sequence_grad(state, xs, ys) # (T, B, ...) via lax.scan
    state, metrics = learner.train_sequence(state, xs, ys)

Objective of a sequence: the mean over time of the batch-mean per-step loss.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from brainscale import local_terms
from brainscale.losses import cross_entropy
from brainscale.model import as_step_model
from transforms import d_rtrl, es_d_rtrl
from transforms.analysis import analyse, check_algorithm_supported
from transforms.errors import ShapeMismatchError
from transforms.feedback import random_feedback
from transforms.online import (linearized_cut, param_grads, readout_signal, step_signals,
                               weight_grads)
from transforms.readout_paths import linear_groups, readout_paths
from transforms.trace import evaluate, trace_step

ALGORITHMS = {"d_rtrl": d_rtrl, "es_d_rtrl": es_d_rtrl, "bptt": None,
              "e_prop": d_rtrl,     # D-RTRL traces with e-prop's broadcast learning signal
              "ostl": d_rtrl}       # = D-RTRL on feed-forward layers (checked at compile)


class LearnerState(NamedTuple):
    params: Any
    opt_state: Any
    hidden: Any          # batched hidden state, leaves (B, ...)
    traces: Any          # the algorithm's eligibility traces (empty for BPTT)
    hidden0: Any         # per-sample initial hidden state, used by reset
    local: Any = ()      # the local rules' states, {weight path: state}


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


class Learner:
    """Static configuration of an online learner; see module docstring."""

    def __init__(self, model, algorithm: str = "es_d_rtrl",
                 optimizer: optax.GradientTransformation | None = None,
                 loss: Callable = cross_entropy, decay: float = 0.9, trace_dtype=None,
                 readout_paths: bool = True, skip_silent: bool = True, window: int = 8,
                 rules: dict | None = None, feedback: str = "symmetric", feedback_seed: int = 0):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}; choose one of "
                             f"{sorted(ALGORITHMS)}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.model = as_step_model(model)
        self.algorithm = algorithm
        self.optimizer = optimizer if optimizer is not None else optax.sgd(1e-2)
        self.loss = loss
        self.decay = float(decay)
        self.trace_dtype = trace_dtype
        self.readout_paths = readout_paths
        self.skip_silent = skip_silent
        if int(window) < 1:
            raise ValueError(f"window must be a positive number of steps, got {window}")
        self.window = int(window)
        self.rules = dict(rules or {})
        if feedback not in ("symmetric", "random"):
            raise ValueError(f"feedback must be 'symmetric' or 'random', got {feedback!r}")
        if feedback == "random" and algorithm != "e_prop":
            raise ValueError("random feedback is e-prop's: use algorithm='e_prop'")
        self.feedback, self.feedback_seed = feedback, int(feedback_seed)
        if self.rules and algorithm == "bptt":
            raise ValueError("local rules run online, beside an online algorithm: use "
                             "'es_d_rtrl' or 'd_rtrl' with rules=")
        self.num_traces = 0           # how often a jitted method was traced
        self._graphs: dict = {}
        self._last_graph = None
        self.step = jax.jit(self._step)
        self.sequence_grad = jax.jit(self._sequence_grad)
        self.train_sequence = jax.jit(self._train_sequence)
        self.predict = jax.jit(self._predict)
        self.reset = jax.jit(self._reset)

    # -- compilation -------------------------------------------------------------
    @property
    def graph(self):
        """The graph IR of the most recently compiled shapes."""
        if self._last_graph is None:
            raise RuntimeError("call learner.init(rng, example_x) first")
        return self._last_graph

    def compile(self, params, hidden, x):
        """Graph IR for per-sample ``hidden`` and ``x`` (cached by shape)."""
        spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
        p, h, xx = (jax.tree.map(spec, t) for t in (params, hidden, x))
        key = tuple((jax.tree_util.tree_structure(t), tuple(_leaves(t))) for t in (p, h, xx))
        if key not in self._graphs:
            graph = analyse(trace_step(self.model.apply, p, h, xx), self.model.elementwise)
            if self.rules:
                local_terms.resolve(graph, self.rules)
            check_algorithm_supported(graph, self.algorithm)
            if self.algorithm == "es_d_rtrl":
                graph.linear_groups = linear_groups(graph)
            if self.readout_paths and self.algorithm != "bptt":
                graph.readout_paths = readout_paths(graph)
            if self.feedback == "random":
                graph.feedback = random_feedback(graph, self.feedback_seed)
            self._graphs[key] = graph
        self._last_graph = self._graphs[key]
        return self._graphs[key]

    def _graph_of(self, state, x, time_axis=False):
        B = _batch_size(state.hidden)
        lead = 1 if time_axis else 0
        for path, leaf in jax.tree_util.tree_flatten_with_path(x)[0]:
            if jnp.ndim(leaf) <= lead or jnp.shape(leaf)[lead] != B:
                want = "(T, B, ...)" if time_axis else "(B, ...)"
                raise ShapeMismatchError(
                    f"input leaf has shape {jnp.shape(leaf)}, expected {want} with B = {B} "
                    "(the batch size the state was initialised with)",
                    path="x" + jax.tree_util.keystr(path),
                    hint="re-initialise the learner with a batch of this size, or pad the batch")
        per = lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[lead + 1:], jnp.result_type(a))
        return self.compile(state.params, state.hidden0, jax.tree.map(per, x))

    # -- state ---------------------------------------------------------------------
    def init(self, rng, example_x) -> LearnerState:
        """Parameters, optimizer state, batched hidden state and zero traces;
        ``example_x`` carries the batch axis first."""
        x0 = jax.tree.map(lambda a: jnp.asarray(a)[0], example_x)
        params, hidden0 = jax.tree.map(_strong, self.model.init(rng, x0))
        B = _batch_size(example_x)
        graph = self.compile(params, hidden0, x0)
        hidden = jax.tree.map(lambda h: jnp.broadcast_to(h, (B,) + jnp.shape(h)), hidden0)
        local = local_terms.init_states(graph, self.rules, _leaves(params), B)
        return LearnerState(params, self.optimizer.init(params), hidden,
                            self._zero_traces(graph, B, hidden0), hidden0, local)

    def _zero_traces(self, graph, batch, hidden0):
        algo = ALGORITHMS[self.algorithm]
        if algo is None:
            return {}
        dtype = jnp.result_type(*_leaves(hidden0)) if _leaves(hidden0) else jnp.float32
        return algo.init(graph, batch, dtype, self.decay, self.trace_dtype)

    def _reset(self, state: LearnerState) -> LearnerState:
        """Hidden state back to its initial value, traces (and the local rules'
        activity traces) to zero."""
        B = _batch_size(state.hidden)
        hidden = jax.tree.map(lambda h: jnp.broadcast_to(h, (B,) + jnp.shape(h)), state.hidden0)
        return state._replace(hidden=hidden, traces=jax.tree.map(jnp.zeros_like, state.traces),
                              local=local_terms.reset_states(self.rules, state.local))

    # -- one online step -----------------------------------------------------------
    def _online_terms(self, graph, params, hidden, traces, x, y, local, window=False):
        """Signals, this step's weight-gradient terms, the advanced traces and
        the local rules' updates and states. With ``window`` (ES-D-RTRL), the
        terms are returned as stacked factors for a later, larger contraction
        instead of being contracted now."""
        algo = ALGORITHMS[self.algorithm]
        p, h, xx = _leaves(params), _leaves(hidden), _leaves(x)
        sig = step_signals(graph, self.loss, p, h, xx, y, extra=local_terms.extra_vars(graph),
                           skip=local_terms.local_params(graph), feedback=graph.feedback)
        slopes = local_terms.post_slopes(graph, self.rules, p, h, xx)
        dws, local = local_terms.updates(graph, self.rules, p, sig.extra, local, None, slopes,
                                         y, sig.hidden)
        args = (graph, traces, sig.signal, self.decay,
                readout_signal(graph, p, sig.signal, graph.feedback),
                sig.x, sig.dy)
        if window:              # the window's factors x, dy, u; contracted by the caller
            g_weff = (sig.x, sig.dy, algo.neuron_cotangents(*args[:5]))
        elif self.skip_silent:  # no loss at this step: every gradient term is exactly zero
            live = jnp.any(jnp.stack([jnp.any(s != 0) for s in list(sig.signal) + sig.dy]))
            shapes = jax.eval_shape(lambda: algo.contract(*args))
            g_weff = jax.lax.cond(live, lambda: algo.contract(*args),
                                  lambda: [jnp.zeros(a.shape, a.dtype) for a in shapes])
        else:
            g_weff = algo.contract(*args)

        def per_sample(fn, tr):
            def one(hh, xv, ys, xs, tr1):
                return fn(tr1, linearized_cut(graph, p, hh, xv, ys), hh, ys, xs)
            return jax.vmap(one)(h, xx, sig.y, sig.x, tr)

        traces = algo.advance(graph, traces, per_sample, self.decay, sig.x)
        return sig, g_weff, traces, dws, local

    def _step(self, state: LearnerState, x, y):
        self.num_traces += 1
        if self.algorithm == "bptt":
            raise ValueError("BPTT needs the whole sequence: use sequence_grad or "
                             "train_sequence, or an online algorithm for step()")
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
    def _scan_online(self, state, xs, ys):
        graph = self._graph_of(state, xs, time_axis=True)
        p = _leaves(state.params)
        T = jax.tree_util.tree_leaves(xs)[0].shape[0]
        k = 1   # the largest window <= self.window that divides T (one compiled chunk)
        if self.algorithm == "es_d_rtrl":
            k = max(d for d in range(1, min(self.window, T) + 1) if T % d == 0)

        def body(carry, inp):
            hidden, traces, acc_imm, acc_w, local, acc_local = carry
            sig, g_weff, traces, dws, local = self._online_terms(
                graph, state.params, hidden, traces, *inp, local, window=k > 1)
            acc_imm = [None if g is None else a + g.astype(a.dtype)
                       for a, g in zip(acc_imm, sig.g_immediate)]
            acc_local = {i: a + dws[i] for i, a in acc_local.items()}
            if k > 1:
                return (_unflatten_like(hidden, sig.hidden), traces, acc_imm, acc_w, local,
                        acc_local), (sig.loss, g_weff)
            acc_w = [a + g.astype(a.dtype) for a, g in zip(acc_w, g_weff)]
            return (_unflatten_like(hidden, sig.hidden), traces, acc_imm, acc_w, local,
                    acc_local), sig.loss

        def chunk(carry, inp):
            """k steps, then one contraction of their stacked factors per op."""
            ex0 = carry[1]["x"]
            (hidden, traces, acc_imm, acc_w, local, acc_local), (losses, (x, dy, u)) = \
                jax.lax.scan(body, carry, inp)
            g = weight_grads(graph, *ALGORITHMS["es_d_rtrl"].window_factors(
                graph, self.decay, ex0, x, dy, u))
            acc_w = [a + b.astype(a.dtype) for a, b in zip(acc_w, g)]
            return (hidden, traces, acc_imm, acc_w, local, acc_local), losses

        skip = {op.param for op in graph.trained_ops()} | local_terms.local_params(graph)
        zeros_imm = [None if i in skip else jnp.zeros_like(a) for i, a in enumerate(p)]
        zeros_w = [jnp.zeros(op.weff_shape, op.weff_dtype) for op in graph.trained_ops()]
        carry = (state.hidden, state.traces, zeros_imm, zeros_w, state.local,
                 local_terms.zero_like_dws(graph, p))
        if k == 1:
            carry, losses = jax.lax.scan(body, carry, (xs, ys))
        else:
            chunks = jax.tree.map(lambda a: a.reshape((T // k, k) + a.shape[1:]), (xs, ys))
            carry, losses = jax.lax.scan(chunk, carry, chunks)
            losses = losses.reshape(-1)
        hidden, traces, acc_imm, acc_w, local, acc_local = carry
        grads = [g / T for g in param_grads(graph, p, acc_imm, acc_w)]
        return (_unflatten_like(state.params, grads), losses, hidden, traces,
                (acc_local, local))

    def _scan_bptt(self, state, xs, ys):
        graph = self._graph_of(state, xs, time_axis=True)
        t = graph.traced

        def total(params):
            p = _leaves(params)

            def body(hidden, inp):
                x, y = inp

                def one(h, xx, yy):
                    outs = evaluate(t.jaxpr, t.consts, p + _leaves(h) + _leaves(xx))
                    out = jax.tree_util.tree_unflatten(t.out_tree, outs[t.n_hidden:])
                    return self.loss(out, yy), _unflatten_like(h, outs[:t.n_hidden])

                ls, hidden = jax.vmap(one)(hidden, x, y)
                return hidden, jnp.mean(ls)

            hidden, losses = jax.lax.scan(body, state.hidden, (xs, ys))
            return jnp.mean(losses), (losses, hidden)

        grads, (losses, hidden) = jax.grad(total, has_aux=True)(state.params)
        return grads, losses, hidden, state.traces, ({}, state.local)

    def _sequence(self, state, xs, ys):
        if self.algorithm == "bptt":
            return self._scan_bptt(state, xs, ys)
        return self._scan_online(state, xs, ys)

    def _sequence_grad(self, state: LearnerState, xs, ys):
        """Gradient of the mean per-step loss over ``xs`` (T, B, ...), starting
        from the hidden state and traces in ``state``; returns (grads, losses)."""
        self.num_traces += 1
        grads, losses, _, _, _ = self._sequence(state, xs, ys)
        return grads, losses

    def _train_sequence(self, state: LearnerState, xs, ys):
        """Reset, gradient over the sequence, one optimizer update."""
        self.num_traces += 1
        state = self._reset(state)
        grads, losses, hidden, traces, (dws, local) = self._sequence(state, xs, ys)
        params, opt_state = self._apply(state, grads, dws)
        metrics = {"loss": jnp.mean(losses), "grad_norm": _norm(grads)}
        return state._replace(params=params, opt_state=opt_state, hidden=hidden,
                              traces=traces, local=local), metrics

    def _predict(self, state: LearnerState, xs):
        """Outputs (T, B, ...) from a reset hidden state; no learning."""
        self.num_traces += 1
        graph = self._graph_of(state, xs, time_axis=True)
        t = graph.traced
        p = _leaves(state.params)
        hidden = self._reset(state).hidden

        def body(hidden, x):
            def one(h, xx):
                outs = evaluate(t.jaxpr, t.consts, p + _leaves(h) + _leaves(xx))
                return (_unflatten_like(h, outs[:t.n_hidden]),
                        jax.tree_util.tree_unflatten(t.out_tree, outs[t.n_hidden:]))
            return jax.vmap(one)(hidden, x)

        return jax.lax.scan(body, hidden, xs)[1]


def _strong(a):
    """Drop weak typing so that updated leaves keep the cache key of the jit."""
    a = jnp.asarray(a)
    return jax.lax.convert_element_type(a, a.dtype) if getattr(a, "weak_type", False) else a


def _norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in _leaves(tree)))


def _batch_size(tree) -> int:
    leaves = _leaves(tree)
    if not leaves:
        raise ShapeMismatchError("no batched leaf to read the batch size from",
                                 hint="give example inputs with a leading batch axis")
    return int(jnp.shape(leaves[0])[0])


def _unflatten_like(tree, leaves):
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), list(leaves))


def online(model, algorithm: str = "es_d_rtrl", optimizer=None, loss=cross_entropy,
           decay: float = 0.9, trace_dtype=None, readout_paths: bool = True,
           skip_silent: bool = True, window: int = 8, rules: dict | None = None,
           feedback: str = "symmetric", feedback_seed: int = 0) -> Learner:
    """Compile ``model`` (an nnx module or ``StepModel``) into an online learner.

    algorithm: "es_d_rtrl" (O(B N) memory), "d_rtrl" (O(B N^2)), "e_prop"
    (D-RTRL's traces with the output error broadcast back: ``feedback``
    "symmetric", which equals D-RTRL, or "random", a fixed random matrix
    drawn with ``feedback_seed``), "ostl" (D-RTRL on feed-forward layers;
    recurrent weights refused), or "bptt" (exact reference, memory grows
    with T). ``decay`` is ES-D-RTRL's alpha;
    ``trace_dtype`` (e.g. ``jnp.bfloat16``) stores D-RTRL traces in a smaller
    type. ``readout_paths`` carries the loss's temporal path through linear
    leaky readouts with filtered traces (off: the paper's plain algorithms).
    ``skip_silent`` skips the trace contraction on steps whose learning signal
    is zero (e.g. outside a task's loss window). ``window`` (ES-D-RTRL over a
    sequence) stacks the weight-gradient factors of up to that many steps (the
    largest divisor of T) into one contraction per op (a larger matmul); the
    result is the same. ``rules`` ({weight path: ``transforms.rules`` rule})
    puts those weights under local plasticity: no gradient for them, their
    rule's update instead (every step in ``step``; summed over the sequence
    in ``train_sequence``).
    """
    return Learner(model, algorithm, optimizer, loss, decay, trace_dtype, readout_paths,
                   skip_silent, window, rules, feedback, feedback_seed)
