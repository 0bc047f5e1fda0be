"""Checkpoints: a learner state plus JSON metadata in one msgpack file.

Written atomically: the bytes go to a temporary file in the same folder,
are flushed to disk, and ``os.replace`` puts them in place, so a crash or a
kill at any moment leaves either the old checkpoint or the new one, never a
torn file. The one it replaces is kept beside it (``<name>.prev``), so a
damaged latest checkpoint loses at most one interval. The file carries the
SHA-256 of its metadata and state bytes, verified on load: a flipped bit is
an error naming the file, never a silently different state. Read back with
msgpack only (arrays as raw bytes, no pickle), into a template state of the
same structure, and checked finite, so a resumed run continues bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import numpy as np
from flax import serialization

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_meta", "CheckpointError",
           "FORMAT", "VERSION", "previous_path"]

FORMAT = "brainscale-checkpoint"
VERSION = 2         # 2: payload bytes + SHA-256; 1 (read, not verifiable): state inline


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (corrupt, other format, or a
    state that does not match the run)."""


def _keep_copy(path: str, keep: str, folder: str) -> None:
    """``keep`` becomes a copy of ``path`` (a hard link where the file system
    has them), atomically; ``path`` itself is never absent."""
    tmp = os.path.join(folder, f".tmp-keep-{os.getpid()}.part")
    try:
        try:
            os.link(path, tmp)
        except OSError:
            import shutil

            shutil.copy2(path, tmp)
        os.replace(tmp, keep)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, data: bytes, keep: str | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file
    (``keep``: the old one is kept there too). A symlink at ``path`` is
    replaced, never followed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())      # mkstemp's 0600 -> what open() would give
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep is not None and os.path.isfile(path) and not os.path.islink(path):
            _keep_copy(path, keep, folder)
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


def previous_path(path: str) -> str:
    """Where the checkpoint that ``path`` replaced is kept."""
    return path + ".prev"


def _digest(meta: str, payload: bytes) -> str:
    return hashlib.sha256(meta.encode() + b"\0" + payload).hexdigest()


def save_checkpoint(path: str, state: Any, meta: dict) -> None:
    """Save a pytree ``state`` (e.g. a ``LearnerState``) and JSON ``meta``;
    the checkpoint it replaces moves to ``previous_path(path)``."""
    payload = serialization.msgpack_serialize(serialization.to_state_dict(_to_numpy(state)))
    meta_text = json.dumps(meta, sort_keys=True, allow_nan=False)
    blob = {"format": FORMAT, "version": VERSION, "meta": meta_text,
            "sha256": _digest(meta_text, payload), "payload": payload}
    atomic_write(path, serialization.msgpack_serialize(blob), keep=previous_path(path))


def _read(path: str) -> tuple[dict, Any]:
    """(the file's fields, its state tree), verified."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
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
    version = blob.get("version")
    if version == 1:
        return blob, blob.get("state")
    if version != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}, "
                              f"this BrainScale reads versions 1 and {VERSION}")
    meta, payload = blob.get("meta"), blob.get("payload")
    if not isinstance(meta, str) or not isinstance(payload, bytes) \
            or blob.get("sha256") != _digest(meta, payload):
        raise CheckpointError(f"{path}: checksum mismatch: the file is damaged (its SHA-256 "
                              "does not match its contents)")
    try:
        return blob, serialization.msgpack_restore(payload)
    except Exception as e:          # noqa: BLE001 - verified bytes that still do not parse
        raise CheckpointError(f"{path}: state unreadable ({type(e).__name__}: {e})") from None


def read_checkpoint_meta(path: str) -> dict:
    return json.loads(_read(path)[0]["meta"])


def load_checkpoint(path: str, template: Any) -> tuple[Any, dict]:
    """``(state, meta)``; ``template`` gives the structure, shapes and dtypes.
    A leaf whose shape or dtype differs, or that holds NaN or inf, is an
    error naming its path."""
    import jax

    blob, tree = _read(path)
    try:
        state = serialization.from_state_dict(template, tree)
    except Exception as e:
        raise CheckpointError(f"{path}: the saved state does not match this run's "
                              f"structure ({e})") from None
    want = jax.tree_util.tree_flatten_with_path(template)[0]
    got = jax.tree_util.tree_leaves(state)
    for (kp, a), b in zip(want, got):
        a_shape, b_shape = np.shape(a), np.shape(b)
        a_dt, b_dt = np.asarray(a).dtype, np.asarray(b).dtype
        where = f"state{jax.tree_util.keystr(kp)}"
        if a_shape != b_shape or a_dt != b_dt:
            raise CheckpointError(f"{path}: leaf {where} was saved as {b_dt}{list(b_shape)}, "
                                  f"this run has {a_dt}{list(a_shape)}")
        b = np.asarray(b)
        if np.issubdtype(b.dtype, np.inexact) and not np.all(np.isfinite(b)):
            bad = int(np.size(b) - np.sum(np.isfinite(b)))
            raise CheckpointError(f"{path}: leaf {where} holds {bad} NaN or inf value(s)")
    state = jax.tree.map(lambda a, b: jax.numpy.asarray(b, dtype=np.asarray(a).dtype),
                         template, state)
    return state, json.loads(blob["meta"])


def _to_numpy(tree):
    import jax

    return jax.tree.map(lambda a: np.asarray(a), tree)
