"""IBM DVS Gesture (Amir et al. 2017), tonic's preprocessed release.

Layout (tonic 1.7's, after extracting its archives into ``<data_dir>/DVSGesture``):
``<data_dir>/DVSGesture/ibmGestureTrain/<user>_<lighting>/<label>.npy`` (and
``ibmGestureTest``), e.g. ``user01_fluorescent/3.npy``; each file is an
``(N, 4)`` array of rows ``x, y, p, t[ms]``. Sensor (W, H, P) = (128, 128, 2);
11 classes; recordings last about 6 s.
"""
from __future__ import annotations

import os

import numpy as np

from brainscale.datasets.dataset import FrameDataset
from brainscale.datasets.errors import DatasetError, MissingDataError
from brainscale.datasets.events import read_dvs_gesture
from brainscale.datasets.frame_task import frame_task
from brainscale.datasets.frames import FrameSpec
from brainscale.models.recurrent_snn import RecurrentSNNOptions

__all__ = ["NAME", "SENSOR_SIZE", "N_CLASSES", "SPLITS", "MODEL_DEFAULTS", "find_files", "load",
           "make_task"]

NAME = "DVSGesture"
SENSOR_SIZE = (128, 128, 2)
N_CLASSES = 11
# split -> (folder, archive, URL), as tonic 1.7's DVSGesture lists them
SPLITS = {
    "train": ("ibmGestureTrain", "ibmGestureTrain.tar.gz",
              "https://figshare.com/ndownloader/files/38022171"),
    "test": ("ibmGestureTest", "ibmGestureTest.tar.gz",
             "https://figshare.com/ndownloader/files/38020584"),
}

# One recurrent ALIF layer (brainscale.models.recurrent_snn.recurrent_snn); steps are frames.
MODEL_OPTIONS = RecurrentSNNOptions   # the schema of MODEL_DEFAULTS and a config's model
MODEL_DEFAULTS = {
    "hidden": [256],
    "neuron": "alif",
    "neuron_options": {"tau": 5.0, "tau_a": 20.0, "beta": 0.2},
    "w_in_scale": 4.0,
    "w_rec_scale": 1.0,
    "tau_out": 5.0,
}


def find_files(data_dir, split: str = "train"):
    """``(root, relative paths, labels)`` of a split, sorted by user folder
    then label; a ``MissingDataError`` when it has no ``.npy`` file."""
    if split not in SPLITS:
        raise ValueError(f"DVS Gesture split must be one of {sorted(SPLITS)}, got {split!r}")
    folder, archive, url = SPLITS[split]
    root = os.path.join(os.path.expanduser(str(data_dir)), NAME)
    split_dir = os.path.join(root, folder)
    entries = []
    if os.path.isdir(split_dir):
        for user in sorted(os.listdir(split_dir)):
            d = os.path.join(split_dir, user)
            if not os.path.isdir(d):
                continue
            for f in os.listdir(d):
                if not f.endswith(".npy"):
                    continue
                stem = f[:-4]
                if not stem.isdigit():
                    raise DatasetError(os.path.join(d, f), "a DVS Gesture file is named "
                                                           "<label>.npy, e.g. 3.npy")
                entries.append((user, int(stem), os.path.join(folder, user, f)))
    if not entries:
        raise MissingDataError("DVS Gesture", split_dir, archive, url, root,
                               f"<user>_<lighting>/<label>.npy files under {split_dir}")
    entries.sort()
    return root, [e[2] for e in entries], np.asarray([e[1] for e in entries])


def load(data_dir, split: str = "train", *, cache_dir=None, **frame_options) -> FrameDataset:
    """A split as a ``FrameDataset``; ``frame_options`` go to ``FrameSpec``."""
    root, files, labels = find_files(data_dir, split)
    return FrameDataset(name=NAME, split=split, root=root, files=files, labels=labels,
                        n_classes=N_CLASSES,
                        read=lambda i: read_dvs_gesture(os.path.join(root, files[i])),
                        where=lambda i: os.path.join(root, files[i]),
                        spec=FrameSpec(SENSOR_SIZE, **frame_options), cache_dir=cache_dir)


def make_task(data_dir, T: int = 40, time_window: int | None = None, origin: str = "first",
              downsample=(32, 32), merge_polarity: bool = False, binary: bool = True,
              label_fraction: float = 0.5, cache_dir=None, max_samples: int | None = None,
              max_eval: int | None = None):
    """The DVS Gesture task: train on ``ibmGestureTrain``, evaluate on
    ``ibmGestureTest``. ``T`` frames (equal bins over each recording, or
    ``time_window`` us each); ``downsample`` a factor in (0, 1] or
    ``[W', H']`` (32 x 32 by default); ``binary`` frames mark pixels with at
    least one event; label on the last ``label_fraction`` of the steps;
    ``cache_dir`` None: no cache; ``max_samples`` / ``max_eval``: fixed
    random subsets."""
    frame = dict(T=T, time_window=time_window, origin=origin, downsample=downsample,
                 merge_polarity=merge_polarity, binary=binary, flatten=True)
    train = load(data_dir, "train", cache_dir=cache_dir, **frame)
    test = load(data_dir, "test", cache_dir=cache_dir, **frame)
    options = {"data_dir": str(data_dir), **train.spec.params(),
               "label_fraction": float(label_fraction),
               "cache_dir": None if cache_dir is None else str(cache_dir),
               "max_samples": max_samples, "max_eval": max_eval}
    options.pop("sensor_size")
    options.pop("flatten")
    return frame_task("dvs_gesture", train, test, T=train.spec.T, label_fraction=label_fraction,
                      max_samples=max_samples, max_eval=max_eval,
                      model_defaults=MODEL_DEFAULTS, options=options)
