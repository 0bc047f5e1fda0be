"""On-disk cache of binned samples: one ``.npz`` per sample, never pickle.

The key is the SHA-256 of the JSON of (format version, dataset identity,
transform parameters); the identity is (name, split, reader options, a
fingerprint of the source files = their relative paths, sizes, modification
times and a hash of their first and last blocks). So a changed parameter or
a changed source file (even rewritten at the same size) gives a new key, hence a new
folder ``<cache_dir>/<name>-<split>-<key[:16]>/`` holding ``<index>.npz``
(``frames`` in the smallest dtype that holds them exactly, and ``key``) and
``meta.json`` (what the key was made of). Files are written atomically:
to a temporary file in the same folder, then ``os.replace``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from brainscale.datasets.errors import DatasetError
from brainscale.datasets.frames import check_frames

__all__ = ["CACHE_FORMAT", "fingerprint", "cache_key", "FrameCache"]

CACHE_FORMAT = 2
_STORED = (np.uint8, np.uint16, np.uint32, np.float32)   # what ``put`` writes


BLOCK = 4096


def fingerprint(root, relpaths) -> str:
    """SHA-256 over the sorted files' relative path, size, modification time
    (ns) and first and last ``BLOCK`` bytes."""
    h = hashlib.sha256()
    for rel in sorted(str(r).replace(os.sep, "/") for r in relpaths):
        path = os.path.join(root, rel)
        st = os.stat(path)
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        if os.path.isfile(path):
            with open(path, "rb") as f:
                h.update(f.read(BLOCK))
                if st.st_size > BLOCK:
                    f.seek(max(st.st_size - BLOCK, BLOCK))
                    h.update(f.read(BLOCK))
    return h.hexdigest()


def cache_key(identity: dict, params: dict) -> str:
    """The cache key of a dataset ``identity`` binned with ``params``."""
    blob = json.dumps({"format": CACHE_FORMAT, "dataset": identity, "transform": params},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _atomic_write(path, write):
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _compact(frames: np.ndarray) -> np.ndarray:
    """The smallest unsigned dtype that stores non-negative integer frames
    exactly; float32 otherwise."""
    if frames.size and np.all(np.isfinite(frames)) and frames.min() >= 0 \
            and np.array_equal(frames, np.floor(frames)):
        top = frames.max()
        for dt in (np.uint8, np.uint16, np.uint32):
            if top <= np.iinfo(dt).max:
                return frames.astype(dt)
    return frames.astype(np.float32)


class FrameCache:
    """The cache folder of one (dataset split, transform) key."""

    def __init__(self, cache_dir, name: str, split: str, identity: dict, params: dict,
                 frame_shape: tuple | None = None, n_frames: int | None = None):
        self.key = cache_key(identity, params)
        self.frame_shape, self.n_frames = frame_shape, n_frames
        self.dir = os.path.join(str(cache_dir), f"{name}-{split}-{self.key[:16]}")
        self.hits = 0
        self.misses = 0
        os.makedirs(self.dir, exist_ok=True)
        meta = os.path.join(self.dir, "meta.json")
        if not os.path.exists(meta):
            text = json.dumps({"format": CACHE_FORMAT, "key": self.key, "dataset": identity,
                               "transform": params}, indent=1, sort_keys=True)
            _atomic_write(meta, lambda f: f.write(text.encode()))

    def path(self, index: int) -> str:
        return os.path.join(self.dir, f"{int(index):06d}.npz")

    def get(self, index: int):
        """float32 frames of sample ``index``, or None if not cached."""
        path = self.path(index)
        if not os.path.exists(path):
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                key, frames = str(z["key"]), z["frames"]
        except Exception as e:
            raise DatasetError(path, f"unreadable cache file ({type(e).__name__}: {e}); "
                                     "delete it to rebuild") from None
        if key != self.key:
            raise DatasetError(path, f"cache file has key {key[:16]}..., expected "
                                     f"{self.key[:16]}...; delete it to rebuild")
        if frames.dtype not in _STORED:
            raise DatasetError(path, f"cached frames have dtype {frames.dtype}, the cache "
                                     "writes uint8/16/32 or float32; delete it to rebuild")
        shape_ok = (frames.ndim >= 1 and (self.frame_shape is None
                                          or tuple(frames.shape[1:]) == tuple(self.frame_shape))
                    and (self.n_frames is None or frames.shape[0] == self.n_frames))
        if not shape_ok:
            want = ("n" if self.n_frames is None else self.n_frames,) + tuple(
                self.frame_shape or ("...",))
            raise DatasetError(path, f"cached frames have shape {frames.shape}, expected "
                                     f"{want}; delete it to rebuild")
        frames = frames.astype(np.float32)
        check_frames(frames, path)
        self.hits += 1
        return frames

    def put(self, index: int, frames: np.ndarray) -> None:
        data = _compact(np.asarray(frames))
        _atomic_write(self.path(index), lambda f: np.savez_compressed(
            f, frames=data, key=np.array(self.key)))
