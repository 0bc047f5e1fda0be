"""Model parallelism: a learner's neurons split across devices, on a 2-D mesh.

The mesh has two axes, ``("batch", "neurons")``. Every leaf of a
``LearnerState`` is placed with a ``NamedSharding``: its neuron axis (the
postsynaptic, output-neuron axis of a weight; the neuron axis of a hidden
state or trace; the synapse axis of sparse connectivity stored as a flat
synapse array) is split over ``"neurons"``, and per-sample leaves are also
split over ``"batch"``. The jitted learner methods are unchanged: XLA
partitions them (GSPMD) and inserts the collectives, so BPTT, D-RTRL and
ES-D-RTRL all run, and give one device's result up to summation order.

    mesh = model_mesh(batch=2, neurons=2)          # 4 devices
    state = shard_model(learner, state, mesh)
    xs, ys = shard_batch((xs, ys), mesh)           # (T, B, ...) leaves
    state, metrics = learner.train_sequence(state, xs, ys)

Where each leaf keeps its neurons (``neuron_axes``):

- hidden state (B, *neurons): axis 1; its per-sample initial value: axis 0;
- a weight: the free axis of its ``dot_general`` (the output neurons, ``x @ W``
  or ``W @ x`` alike, through a transpose or an elementwise Dale's-law
  chain); a weight used by a sparse op (``segment_sum(W * x[pre], post)``,
  a BCOO product) or any 1-D weight (a bias, a time constant): axis 0;
  otherwise the last axis whose length is a neuron population's size (else
  the last axis); a scalar stays whole;
- traces: the first axis that is not their batch axis (ES-D-RTRL's (B, *x)
  and (B, *neurons), D-RTRL's (*y, B, *x) and (B, n_synapses));
- optimizer state: that of its parameter (a subtree shaped like the
  parameters, e.g. Adam's moments); the step counters stay whole;
- the local rules' states: batch only.

An axis whose length the ``"neurons"`` mesh axis does not divide stays whole
(replicated), never an error. ``overrides`` ({path: PartitionSpec}) set any
leaf's placement by its path in the state, e.g. ``"params['rec']['W']"``;
a parameter's override also places its optimizer state.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from brainscale.sharding import shard_batch, state_batch_axes
from transforms.ir.graph import BCOO, DENSE, SPARSE
from transforms.ir.weight_ops import is_var

__all__ = ["model_mesh", "neuron_axes", "state_specs", "shard_model", "shard_hidden",
           "shard_batch", "BATCH", "NEURONS"]

BATCH, NEURONS = "batch", "neurons"


def model_mesh(batch: int = 1, neurons: int | None = None, devices=None) -> Mesh:
    """A ``(batch, neurons)`` mesh of ``batch * neurons`` devices: the first
    ones of ``devices`` (default ``jax.devices()``). ``neurons`` defaults to
    all the devices left over by ``batch``."""
    available = list(jax.devices() if devices is None else devices)
    if not (isinstance(batch, int) and batch > 0):
        raise ValueError(f"mesh batch size must be a positive integer, got {batch!r}")
    if neurons is None:
        neurons = len(available) // batch
    if not (isinstance(neurons, int) and neurons > 0):
        raise ValueError(f"mesh neurons size must be a positive integer, got {neurons!r} "
                         f"({len(available)} devices, batch {batch})")
    need = batch * neurons
    if need > len(available):
        raise ValueError(f"a {batch}x{neurons} mesh (batch x neurons) needs {need} devices, "
                         f"only {len(available)} available ({available[0].platform}); on "
                         f"CPU set XLA_FLAGS=--xla_force_host_platform_device_count={need}")
    return Mesh(np.asarray(available[:need]).reshape(batch, neurons), (BATCH, NEURONS))


# -- where the neurons are ----------------------------------------------------------
def _graph(learner):
    """The learner's graph IR where it has compiled one (online learners do
    at ``init``; BPTT does not analyse the step)."""
    try:
        return learner.graph
    except RuntimeError:
        return None


def _chain_axes(graph, op):
    """For each axis of W_eff, the axis of the parameter it comes from; None
    where the chain reshapes, broadcasts or scatters the parameter."""
    axes = {op.param_var: tuple(range(len(op.w_shape)))}
    for i in op.chain:
        eqn = graph.traced.eqns[i]
        src = next((v for v in eqn.invars if is_var(v) and v in axes), None)
        if src is None:
            continue
        out = eqn.outvars[0]
        if eqn.primitive.name == "transpose":
            axes[out] = tuple(axes[src][p] for p in eqn.params["permutation"])
        elif tuple(out.aval.shape) == tuple(src.aval.shape):
            axes[out] = axes[src]            # elementwise: abs(W) * sign, a cast
    return axes.get(op.weff_var)


def _dense_axis(graph, op):
    """The weight's output-neuron axis in a ``dot_general``: its first free
    (neither contracted nor batch) axis, mapped back through the chain."""
    eqn = next((graph.traced.eqns[i] for i in op.core
                if graph.traced.eqns[i].primitive.name == "dot_general"
                and any(v is op.weff_var for v in graph.traced.eqns[i].invars)), None)
    mapped = _chain_axes(graph, op)
    if eqn is None or mapped is None:
        return None
    pos = [j for j, v in enumerate(eqn.invars) if v is op.weff_var][0]
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    used = set(lc + lb) if pos == 0 else set(rc + rb)
    free = [d for d in range(len(op.weff_shape)) if d not in used]
    return mapped[free[0]] if free else None


def _guess_axis(shape, sizes):
    """Shape alone: 1-D -> 0; else the last axis of a population's size,
    else the last axis; a scalar has none."""
    if not shape:
        return None
    if len(shape) == 1:
        return 0
    hits = [d for d, n in enumerate(shape) if n in sizes]
    return hits[-1] if hits else len(shape) - 1


def _param_axes(learner, state):
    leaves, tdef = jax.tree_util.tree_flatten(state.params)
    sizes = {int(np.shape(h)[0]) for h in jax.tree_util.tree_leaves(state.hidden0)
             if np.ndim(h) >= 1}
    axes = [_guess_axis(tuple(np.shape(a)), sizes) for a in leaves]
    graph = _graph(learner)
    if graph is not None:
        for i, a in enumerate(leaves):
            ops = [op for op in graph.ops if op.param == i]
            if np.ndim(a) and any(op.kind in (SPARSE, BCOO) for op in ops):
                axes[i] = 0                  # the flat synapse axis
                continue
            found = [ax for op in ops if op.kind == DENSE
                     for ax in [_dense_axis(graph, op)] if ax is not None]
            if found:
                axes[i] = found[0]
    return jax.tree_util.tree_unflatten(tdef, axes)


def _first_other(ndim, batch_axis):
    rest = [d for d in range(ndim) if d != batch_axis]
    return rest[0] if rest else None


def _follow_params(opt_state, params, param_values):
    """``param_values`` (shaped like ``params``) copied onto every subtree of
    ``opt_state`` built like the parameters; other leaves get None."""
    tdef = jax.tree_util.tree_structure(params)
    shapes = [np.shape(a) for a in jax.tree_util.tree_leaves(params)]
    values = jax.tree_util.tree_leaves(param_values, is_leaf=lambda v: v is None)

    def like_params(t):
        if jax.tree_util.tree_structure(t) != tdef or tdef.num_leaves == 0:
            return False
        return [np.shape(a) for a in jax.tree_util.tree_leaves(t)] == shapes

    def place(t):
        if like_params(t):
            return jax.tree_util.tree_unflatten(tdef, values)
        return jax.tree.map(lambda _: None, t)
    return jax.tree.map(place, opt_state, is_leaf=like_params)


def neuron_axes(learner, state):
    """Per leaf of ``state`` (a ``LearnerState``): the axis holding its
    neurons (or synapses), or None (see the module docstring)."""
    batch = state_batch_axes(learner, state)
    none = lambda t: jax.tree.map(lambda _: None, t)
    params = _param_axes(learner, state)
    return type(state)(
        params=params,
        opt_state=_follow_params(state.opt_state, state.params, params),
        hidden=jax.tree.map(lambda h: 1 if np.ndim(h) >= 2 else None, state.hidden),
        traces=jax.tree.map(lambda t, b: _first_other(np.ndim(t), b), state.traces,
                            batch.traces, is_leaf=lambda v: v is None),
        hidden0=jax.tree.map(lambda h: 0 if np.ndim(h) >= 1 else None, state.hidden0),
        local=none(state.local))


# -- placement ----------------------------------------------------------------------
def _norm_path(path: str) -> str:
    return path[1:] if path.startswith(".") else path


def state_specs(learner, state, mesh: Mesh, overrides: dict | None = None):
    """A ``PartitionSpec`` per leaf of ``state`` for ``mesh``: batch axes on
    ``"batch"``, neuron axes on ``"neurons"`` where that mesh axis divides
    them; ``overrides`` ({path: PartitionSpec}) win."""
    nb = mesh.shape.get(BATCH, 1)
    nn = mesh.shape.get(NEURONS, 1)
    B = int(jax.tree_util.tree_leaves(state.hidden)[0].shape[0])
    if B % nb:
        raise ValueError(f"batch size {B} does not split evenly over the mesh's "
                         f"{nb} batch devices")
    batch, neurons = state_batch_axes(learner, state), neuron_axes(learner, state)

    def spec(a, b, n):
        s = [None] * np.ndim(a)
        if b is not None and BATCH in mesh.shape:
            s[b] = BATCH
        if n is not None and NEURONS in mesh.shape and np.shape(a)[n] % nn == 0:
            s[n] = NEURONS
        return PartitionSpec(*s)

    specs = jax.tree.map(spec, state, batch, neurons, is_leaf=lambda v: v is None)
    return _apply_overrides(state, specs, dict(overrides or {}), mesh)


def _apply_overrides(state, specs, overrides, mesh):
    if not overrides:
        return specs
    wanted = {_norm_path(k): v for k, v in overrides.items()}
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    paths = [_norm_path(jax.tree_util.keystr(p)) for p, _ in flat]
    unknown = sorted(set(wanted) - set(paths))
    if unknown:
        near = [p for p in paths if p.startswith("params")][:6]
        raise ValueError(f"override path {unknown[0]!r} is no leaf of the learner state; "
                         f"paths look like {near}")
    for path, (_, a) in zip(paths, flat):
        if path in wanted:
            _check_spec(path, wanted[path], np.shape(a), mesh)
    # a parameter's override places its optimizer state too
    pspec = jax.tree_util.tree_map_with_path(
        lambda p, s: wanted.get(_norm_path("params" + jax.tree_util.keystr(p)), s),
        specs.params, is_leaf=lambda v: isinstance(v, PartitionSpec))
    opt = _follow_params(state.opt_state, state.params, pspec)
    specs = specs._replace(params=pspec, opt_state=jax.tree.map(
        lambda s, o: s if o is None else o, specs.opt_state, opt,
        is_leaf=lambda v: v is None or isinstance(v, PartitionSpec)))
    leaves, tdef = jax.tree_util.tree_flatten(specs, is_leaf=lambda v: isinstance(
        v, PartitionSpec))
    leaves = [wanted.get(p, s) for p, s in zip(paths, leaves)]
    return jax.tree_util.tree_unflatten(tdef, leaves)


def _check_spec(path, spec, shape, mesh):
    if not isinstance(spec, PartitionSpec):
        raise ValueError(f"override for {path} must be a jax.sharding.PartitionSpec, got "
                         f"{type(spec).__name__}")
    if len(spec) > len(shape):
        raise ValueError(f"override for {path}: {spec} has {len(spec)} entries, the leaf "
                         f"has shape {shape}")
    for d, names in enumerate(spec):
        names = () if names is None else (names,) if isinstance(names, str) else tuple(names)
        for name in names:
            if name not in mesh.shape:
                raise ValueError(f"override for {path}: {spec} names mesh axis {name!r}; the "
                                 f"mesh has {tuple(mesh.axis_names)}")
        k = math.prod(mesh.shape[n] for n in names)
        if shape[d] % k:
            raise ValueError(f"override for {path}: axis {d} of shape {shape} does not split "
                             f"over {k} devices ({spec})")


def shard_model(learner, state, mesh: Mesh, overrides: dict | None = None):
    """``state`` placed on ``mesh`` by ``state_specs``."""
    specs = state_specs(learner, state, mesh, overrides)
    return jax.tree.map(lambda a, s: jax.device_put(a, NamedSharding(mesh, s)), state, specs)


def shard_hidden(hidden, mesh: Mesh):
    """A batched hidden state (leaves (B, *neurons)) placed like
    ``shard_model`` places ``state.hidden`` (e.g. for ``predict``)."""
    nn = mesh.shape.get(NEURONS, 1)

    def put(a):
        s = [None] * np.ndim(a)
        if s and BATCH in mesh.shape:
            s[0] = BATCH
        if np.ndim(a) >= 2 and NEURONS in mesh.shape and np.shape(a)[1] % nn == 0:
            s[1] = NEURONS
        return jax.device_put(a, NamedSharding(mesh, PartitionSpec(*s)))
    return jax.tree.map(put, hidden)
