"""Neuromorphic datasets (N-MNIST, SHD, SSC, DVS Gesture) as training tasks.

Nothing is downloaded: put the files where ``MissingDataError`` says (the
layout tonic 1.7 uses under a data folder). Events are read with tonic and
h5py (the ``data`` extra), imported only when data is read, binned into
float32 frames (``FrameSpec``), optionally cached on disk as ``.npz``, and
batched as ``xs (T, B, n_in)``, ``ys (T, B)``.

    from brainscale.datasets import nmnist
    task = nmnist.make_task("~/data", T=30, cache_dir="~/data/cache")
"""
from brainscale.datasets.cache import CACHE_FORMAT, FrameCache, cache_key, fingerprint
from brainscale.datasets.collate import batch_indices, collate, subset_indices
from brainscale.datasets.dataset import FrameDataset
from brainscale.datasets.errors import DatasetError, MissingDataError
from brainscale.datasets.events import EVENTS, check_events
from brainscale.datasets.frames import FrameSpec, check_frames, to_frames

__all__ = ["CACHE_FORMAT", "DatasetError", "EVENTS", "FrameCache", "FrameDataset", "FrameSpec",
           "MissingDataError", "batch_indices", "cache_key", "check_events", "check_frames",
           "collate", "fingerprint", "subset_indices", "to_frames"]
