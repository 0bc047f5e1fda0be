"""One split of an event dataset, binned into frames on demand (and cached).

A dataset module discovers its files and hands over: the labels, a reader
``read(i) -> events`` and ``where(i) -> str`` (the file, and the sample
inside it, for error messages), the source files' relative paths (for the
cache fingerprint) and the class count. ``FrameDataset`` checks the labels,
bins with a ``FrameSpec`` and caches by ``brainscale.datasets.cache``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from brainscale.datasets.cache import FrameCache, fingerprint
from brainscale.datasets.errors import DatasetError
from brainscale.datasets.frames import FrameSpec, to_frames

__all__ = ["FrameDataset"]


class FrameDataset:
    """Samples ``i = 0 .. len-1`` of one split as ``(frames, label)``.

    ``source_reads`` counts event reads from the source files (cache misses
    when a ``cache_dir`` is given).
    """

    def __init__(self, *, name: str, split: str, root, files, labels, n_classes: int,
                 read: Callable[[int], np.ndarray], where: Callable[[int], str],
                 spec: FrameSpec, cache_dir=None, reader_options: dict | None = None):
        self.name, self.split, self.root = name, split, str(root)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.n_classes = int(n_classes)
        self.spec = spec
        self._read, self.where = read, where
        self.source_reads = 0
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.n_classes))
        if len(bad):
            i = int(bad[0])
            raise DatasetError(where(i), f"label {int(self.labels[i])} is out of range: "
                                         f"{name} has {self.n_classes} classes (0.."
                                         f"{self.n_classes - 1}); {len(bad)} bad label(s)")
        self.cache = None
        if cache_dir is not None:       # the fingerprint reads every file: only for a cache
            identity = {"name": name, "split": split,
                        "fingerprint": fingerprint(root, files),
                        "n_samples": len(self.labels), "reader": dict(reader_options or {})}
            self.cache = FrameCache(cache_dir, name, split, identity, spec.params(),
                                    spec.frame_shape, spec.T)

    def __len__(self) -> int:
        return len(self.labels)

    def frames(self, i: int) -> np.ndarray:
        """float32 ``(n_frames, *spec.frame_shape)`` of sample ``i``."""
        i = int(i)
        if self.cache is not None:
            cached = self.cache.get(i)
            if cached is not None:
                return cached
        try:
            events = self._read(i)
        except (DatasetError, ImportError):    # a missing extra is not a damaged file
            raise
        except Exception as e:              # noqa: BLE001 - any reader failure, named
            raise DatasetError(self.where(i), f"unreadable ({type(e).__name__}: {e})") from None
        self.source_reads += 1
        frames = to_frames(events, self.spec, source=self.where(i))
        if self.cache is not None:
            self.cache.put(i, frames)
        return frames

    def __getitem__(self, i: int):
        return self.frames(i), int(self.labels[int(i)])
