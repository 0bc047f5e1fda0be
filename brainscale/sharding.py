"""Data parallelism: the batch of a learner split across devices.

Every per-sample quantity of a ``LearnerState`` (hidden state, eligibility
traces, local rules' activity traces) carries the batch on one axis; parameters and optimizer state are
replicated. Placing the state and the inputs with ``NamedSharding`` is all
it takes: the jitted learner methods are unchanged and XLA partitions them
(GSPMD), reducing the weight gradients across devices.

The mesh may span several processes (after ``jax.distributed.initialize``;
``brainscale.train.distributed``). Every process then passes the same whole
value and keeps only the rows of its own devices
(``jax.make_array_from_callback``): nothing crosses processes to place an
array, and the batch each device sees is the one a single process would give
it.

    mesh = batch_mesh(4)
    state = shard_state(learner, state, mesh)
    xs, ys = shard_batch((xs, ys), mesh)            # (T, B, ...) leaves
    state, metrics = learner.train_sequence(state, xs, ys)
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from transforms.plasticity import terms as local_terms

__all__ = ["batch_mesh", "state_batch_axes", "shard_state", "shard_batch"]

AXIS = "batch"


def batch_mesh(devices=None, axis: str = AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (a list, a count of the first local
    devices, or ``None`` for all of them)."""
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, int):
        available = jax.devices()
        if devices > len(available):
            raise ValueError(f"asked for {devices} devices, only {len(available)} available "
                             f"({available[0].platform}); on CPU set "
                             f"XLA_FLAGS=--xla_force_host_platform_device_count={devices}")
        devices = available[:devices]
    return Mesh(np.asarray(devices), (axis,))


def state_batch_axes(learner, state):
    """Per leaf of ``state``: the axis holding the batch, or ``None``.

    Hidden states are batch-first; the online algorithm says where its
    traces keep the batch (``algorithm.batch_axes``). A local rule's state
    mixes per-sample traces with per-weight state, so its batch axes are
    found by shape: built for B and B + 1, the one axis whose length changes
    is the batch axis."""
    B = int(jax.tree_util.tree_leaves(state.hidden)[0].shape[0])
    if learner.algorithm.online:
        grown_local = jax.eval_shape(lambda: local_terms.init_states(
            learner.graph, learner.rules, jax.tree_util.tree_leaves(state.params), B + 1))
    else:                       # BPTT keeps no local state
        grown_local = state.local

    def axis_of(a, b):
        diff = [i for i, (m, n) in enumerate(zip(np.shape(a), b.shape)) if m != n]
        return diff[0] if len(diff) == 1 else None

    none = lambda t: jax.tree.map(lambda _: None, t)
    return type(state)(params=none(state.params), opt_state=none(state.opt_state),
                       hidden=jax.tree.map(lambda _: 0, state.hidden),
                       traces=learner.algorithm.batch_axes(learner.graph)
                       if learner.algorithm.online else state.traces,
                       hidden0=none(state.hidden0),
                       local=jax.tree.map(axis_of, state.local, grown_local))


def _sharding(mesh, ndim, axis, name):
    spec = [None] * ndim
    if axis is not None:
        spec[axis] = name
    return NamedSharding(mesh, PartitionSpec(*spec))


def _place(a, sharding):
    """``a`` (the same whole value in every process) on ``sharding``. Where the
    sharding spans other processes' devices, this process fills only its own
    shards from its copy; ``device_put`` would first compare the whole value
    across processes, one collective per leaf."""
    if sharding.is_fully_addressable or (isinstance(a, jax.Array)
                                         and not a.is_fully_addressable):
        return jax.device_put(a, sharding)
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_state(learner, state, mesh: Mesh, axis: str = AXIS):
    """``state`` placed on ``mesh``: batch axes split, the rest replicated."""
    n = mesh.shape[axis]
    B = int(jax.tree_util.tree_leaves(state.hidden)[0].shape[0])
    if B % n:
        raise ValueError(f"batch size {B} does not split evenly over {n} devices")
    axes = state_batch_axes(learner, state)
    return jax.tree.map(lambda a, ax: _place(a, _sharding(mesh, np.ndim(a), ax, axis)),
                        state, axes, is_leaf=lambda x: x is None)


def shard_batch(tree, mesh: Mesh, axis: str = AXIS, time_axis: bool = True):
    """Inputs/labels with the batch on axis 1 (``time_axis``) or 0, split."""
    b = 1 if time_axis else 0
    n = mesh.shape[axis]

    def put(path, a):
        a = np.asarray(a) if not isinstance(a, jax.Array) else a
        if np.ndim(a) <= b or np.shape(a)[b] % n:
            raise ValueError(f"batch leaf {jax.tree_util.keystr(path)} of shape {np.shape(a)} "
                             f"does not split over {n} devices on axis {b}")
        return _place(a, _sharding(mesh, np.ndim(a), b, axis))

    return jax.tree_util.tree_map_with_path(put, tree)
