"""Checkpoints: a learner state plus JSON metadata in one msgpack file.

Written atomically: the bytes go to a temporary file in the same folder,
are flushed to disk, and ``os.replace`` puts them in place, so a crash or a
kill at any moment leaves either the old checkpoint or the new one, never a
torn file. Read back with msgpack only (arrays as raw bytes, no pickle),
into a template state of the same structure, so a resumed run continues
bit for bit.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np
from flax import serialization

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_meta", "CheckpointError",
           "FORMAT", "VERSION"]

FORMAT = "brainscale-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (corrupt, other format, or a
    state that does not match the run)."""


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_checkpoint(path: str, state: Any, meta: dict) -> None:
    """Save a pytree ``state`` (e.g. a ``LearnerState``) and JSON ``meta``."""
    tree = serialization.to_state_dict(_to_numpy(state))
    blob = {"format": FORMAT, "version": VERSION, "meta": json.dumps(meta, sort_keys=True),
            "state": tree}
    atomic_write(path, serialization.msgpack_serialize(blob))


def _read(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            blob = serialization.msgpack_restore(f.read())
    except FileNotFoundError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") \
            from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a BrainScale checkpoint")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {blob.get('version')}, "
                              f"this BrainScale reads version {VERSION}")
    return blob


def read_checkpoint_meta(path: str) -> dict:
    return json.loads(_read(path)["meta"])


def load_checkpoint(path: str, template: Any) -> tuple[Any, dict]:
    """``(state, meta)``; ``template`` gives the structure, shapes and dtypes.
    A leaf whose shape or dtype differs is an error naming its path."""
    import jax

    blob = _read(path)
    try:
        state = serialization.from_state_dict(template, blob["state"])
    except Exception as e:
        raise CheckpointError(f"{path}: the saved state does not match this run's "
                              f"structure ({e})") from None
    want = jax.tree_util.tree_flatten_with_path(template)[0]
    got = jax.tree_util.tree_leaves(state)
    for (kp, a), b in zip(want, got):
        a_shape, b_shape = np.shape(a), np.shape(b)
        a_dt, b_dt = np.asarray(a).dtype, np.asarray(b).dtype
        if a_shape != b_shape or a_dt != b_dt:
            raise CheckpointError(
                f"{path}: leaf state{jax.tree_util.keystr(kp)} was saved as {b_dt}{list(b_shape)}"
                f", this run has {a_dt}{list(a_shape)}")
    state = jax.tree.map(lambda a, b: jax.numpy.asarray(b, dtype=np.asarray(a).dtype),
                         template, state)
    return state, json.loads(blob["meta"])


def _to_numpy(tree):
    import jax

    return jax.tree.map(lambda a: np.asarray(a), tree)
