"""N-MNIST (Orchard et al. 2015): saccading ATIS recordings of MNIST digits.

Layout (tonic 1.7's, after extracting its archives into ``<data_dir>/NMNIST``):
``<data_dir>/NMNIST/Train/<digit>/*.bin`` and ``.../Test/<digit>/*.bin``;
the label is the folder name. Sensor (W, H, P) = (34, 34, 2); about 300 ms
per sample in three saccades of about 100 ms.
"""
from __future__ import annotations

import os

import numpy as np

from brainscale.datasets.dataset import FrameDataset
from brainscale.datasets.errors import DatasetError, MissingDataError
from brainscale.datasets.events import read_nmnist
from brainscale.datasets.frame_task import frame_task
from brainscale.datasets.frames import FrameSpec
from brainscale.models.recurrent_snn import RecurrentSNNOptions

__all__ = ["NAME", "SENSOR_SIZE", "N_CLASSES", "SPLITS", "MODEL_DEFAULTS", "find_files", "load",
           "make_task"]

NAME = "NMNIST"
SENSOR_SIZE = (34, 34, 2)
N_CLASSES = 10
FIRST_SACCADE_US = 100_000          # tonic's first_saccade_only: t < 1e5 us
_URL = "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"
# split -> (folder, archive, URL), as tonic 1.7's NMNIST lists them
SPLITS = {
    "train": ("Train", "train.zip", _URL + "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded"),
    "test": ("Test", "test.zip", _URL + "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded"),
}

# One recurrent LIF layer (brainscale.models.recurrent_snn.recurrent_snn); steps are frames.
MODEL_OPTIONS = RecurrentSNNOptions   # the schema of MODEL_DEFAULTS and a config's model
MODEL_DEFAULTS = {
    "hidden": [256],
    "neuron": "lif",
    "neuron_options": {"tau": 10.0},
    "w_in_scale": 6.0,
    "w_rec_scale": 1.0,
    "tau_out": 10.0,
}


def find_files(data_dir, split: str = "train"):
    """``(root, relative paths, labels)`` of a split, sorted by label then
    file name; a ``MissingDataError`` when it has no ``.bin`` file."""
    if split not in SPLITS:
        raise ValueError(f"N-MNIST split must be one of {sorted(SPLITS)}, got {split!r}")
    folder, archive, url = SPLITS[split]
    root = os.path.join(os.path.expanduser(str(data_dir)), NAME)
    split_dir = os.path.join(root, folder)
    files, labels = [], []
    if os.path.isdir(split_dir):
        for sub in sorted(os.listdir(split_dir)):
            d = os.path.join(split_dir, sub)
            if not os.path.isdir(d):
                continue
            names = sorted(f for f in os.listdir(d) if f.endswith(".bin"))
            if not names:
                continue
            if not sub.isdigit():
                raise DatasetError(d, "holds .bin files but its name is not a digit label")
            files += [os.path.join(folder, sub, f) for f in names]
            labels += [int(sub)] * len(names)
    if not files:
        raise MissingDataError("N-MNIST", split_dir, archive, url, root,
                               f"<digit>/*.bin files under {split_dir}")
    order = sorted(range(len(files)), key=lambda i: (labels[i], files[i]))
    return root, [files[i] for i in order], np.asarray([labels[i] for i in order])


def load(data_dir, split: str = "train", *, cache_dir=None, first_saccade_only: bool = False,
         **frame_options) -> FrameDataset:
    """A split as a ``FrameDataset``; ``frame_options`` go to ``FrameSpec``
    (``T``, ``time_window``, ``downsample``...). ``first_saccade_only`` keeps
    the events with ``t < 100 ms``, as tonic's option does."""
    root, files, labels = find_files(data_dir, split)

    def read(i):
        ev = read_nmnist(os.path.join(root, files[i]))
        return ev[ev["t"] < FIRST_SACCADE_US] if first_saccade_only else ev

    return FrameDataset(name=NAME, split=split, root=root, files=files, labels=labels,
                        n_classes=N_CLASSES, read=read,
                        where=lambda i: os.path.join(root, files[i]),
                        spec=FrameSpec(SENSOR_SIZE, **frame_options), cache_dir=cache_dir,
                        reader_options={"first_saccade_only": bool(first_saccade_only)})


def make_task(data_dir, T: int = 30, time_window: int | None = None, origin: str = "first",
              downsample=None, merge_polarity: bool = False, binary: bool = False,
              first_saccade_only: bool = False, label_fraction: float = 0.5,
              cache_dir=None, max_samples: int | None = None,
              max_eval: int | None = None):
    """The N-MNIST task: train on ``Train``, evaluate on ``Test``.

    ``T`` frames per sample (equal bins over each sample, or ``time_window``
    us each); ``downsample`` a factor in (0, 1] or ``[W', H']``; the label
    sits on the last ``label_fraction`` of the steps. ``cache_dir``: where
    binned samples are cached (None: no cache). ``max_samples`` /
    ``max_eval``: a fixed random subset of the training / test split.
    """
    frame = dict(T=T, time_window=time_window, origin=origin, downsample=downsample,
                 merge_polarity=merge_polarity, binary=binary, flatten=True)
    kw = dict(cache_dir=cache_dir, first_saccade_only=first_saccade_only, **frame)
    train, test = load(data_dir, "train", **kw), load(data_dir, "test", **kw)
    options = {"data_dir": str(data_dir), **train.spec.params(),
               "first_saccade_only": bool(first_saccade_only),
               "label_fraction": float(label_fraction),
               "cache_dir": None if cache_dir is None else str(cache_dir),
               "max_samples": max_samples, "max_eval": max_eval}
    options.pop("sensor_size")
    options.pop("flatten")
    return frame_task("nmnist", train, test, T=train.spec.T, label_fraction=label_fraction,
                      max_samples=max_samples, max_eval=max_eval,
                      model_defaults=MODEL_DEFAULTS, options=options)
