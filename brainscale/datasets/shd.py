"""SHD and SSC (Cramer et al. 2020): spoken words as spikes of 700 cochlear channels.

Layout (tonic 1.7's, after unzipping its archives): ``<data_dir>/SHD/shd_train.h5``,
``shd_test.h5``; ``<data_dir>/SSC/ssc_train.h5``, ``ssc_valid.h5``,
``ssc_test.h5``. Each file holds ``spikes/times`` (s) and ``spikes/units``
(one variable-length array per sample), ``labels``, and ``extra/keys``,
``extra/speaker``. Sensor (W, H, P) = (700, 1, 1); words last up to ~1 s,
so the default bins are 10 ms from t = 0.
"""
from __future__ import annotations

import os

from brainscale.datasets.dataset import FrameDataset
from brainscale.datasets.errors import MissingDataError
from brainscale.datasets.events import HSDFile
from brainscale.datasets.frame_task import frame_task
from brainscale.datasets.frames import FrameSpec
from brainscale.models.recurrent_snn import RecurrentSNNOptions

__all__ = ["SENSOR_SIZE", "BASE_URL", "KINDS", "MODEL_DEFAULTS", "h5_path", "load", "load_ssc",
           "make_task", "make_ssc_task"]

SENSOR_SIZE = (700, 1, 1)
BASE_URL = "https://zenkelab.org/datasets/"          # tonic 1.7's HSD.base_url
# name -> (classes, splits); the file of split s is <name lower>_<s>.h5, its
# archive <file>.zip at BASE_URL
KINDS = {"SHD": (20, ("train", "test")), "SSC": (35, ("train", "valid", "test"))}

# One recurrent ALIF layer (brainscale.models.recurrent_snn.recurrent_snn); steps are 10 ms bins.
MODEL_OPTIONS = RecurrentSNNOptions   # the schema of MODEL_DEFAULTS and a config's model
MODEL_DEFAULTS = {
    "hidden": [256],
    "neuron": "alif",
    "neuron_options": {"tau": 2.0, "tau_a": 20.0, "beta": 0.2},
    "w_in_scale": 4.0,
    "w_rec_scale": 1.0,
    "tau_out": 10.0,
}


def h5_path(data_dir, kind: str = "SHD", split: str = "train") -> str:
    """The HDF5 file of a split; a ``MissingDataError`` naming the archive,
    its URL and the folder to unzip it into when absent."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if split not in KINDS[kind][1]:
        raise ValueError(f"{kind} split must be one of {KINDS[kind][1]}, got {split!r}")
    root = os.path.join(os.path.expanduser(str(data_dir)), kind)
    name = f"{kind.lower()}_{split}.h5"
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        raise MissingDataError(kind, path, name + ".zip", BASE_URL + name + ".zip", root,
                               f"the file {path}")
    return path


def load(data_dir, split: str = "train", *, kind: str = "SHD", cache_dir=None,
         **frame_options) -> FrameDataset:
    """A split as a ``FrameDataset``; ``frame_options`` go to ``FrameSpec``."""
    path = h5_path(data_dir, kind, split)
    h5 = HSDFile(path)
    return FrameDataset(name=kind, split=split, root=os.path.dirname(path),
                        files=[os.path.basename(path)], labels=h5.labels,
                        n_classes=KINDS[kind][0], read=h5.events,
                        where=lambda i: f"{path} (sample {i})",
                        spec=FrameSpec(SENSOR_SIZE, **frame_options), cache_dir=cache_dir)


def load_ssc(data_dir, split: str = "train", **kw) -> FrameDataset:
    return load(data_dir, split, kind="SSC", **kw)


def _task(kind, eval_split, data_dir, T, time_window, origin, downsample, binary,
          label_fraction, cache_dir, max_samples, max_eval):
    frame = dict(T=T, time_window=time_window, origin=origin, downsample=downsample,
                 binary=binary, flatten=True)
    train = load(data_dir, "train", kind=kind, cache_dir=cache_dir, **frame)
    test = load(data_dir, eval_split, kind=kind, cache_dir=cache_dir, **frame)
    options = {"data_dir": str(data_dir), **train.spec.params(),
               "label_fraction": float(label_fraction),
               "cache_dir": None if cache_dir is None else str(cache_dir),
               "max_samples": max_samples, "max_eval": max_eval}
    for k in ("sensor_size", "flatten", "merge_polarity"):
        options.pop(k)
    if kind == "SSC":
        options["eval_split"] = eval_split
    return frame_task(kind.lower(), train, test, T=train.spec.T, label_fraction=label_fraction,
                      max_samples=max_samples, max_eval=max_eval,
                      model_defaults=MODEL_DEFAULTS, options=options)


def make_task(data_dir, T: int = 100, time_window: int | None = 10_000, origin: str = "zero",
              downsample=None, binary: bool = False, label_fraction: float = 0.5,
              cache_dir=None, max_samples: int | None = None, max_eval: int | None = None):
    """The SHD task (20 classes): train on ``shd_train.h5``, evaluate on
    ``shd_test.h5``. ``T`` frames of ``time_window`` us from ``origin``
    (None: ``T`` equal bins per sample); ``downsample`` a factor in (0, 1]
    or ``[channels, 1]``; label on the last ``label_fraction`` of the steps;
    ``cache_dir`` None: no cache; ``max_samples`` / ``max_eval``: fixed
    random subsets."""
    return _task("SHD", "test", data_dir, T, time_window, origin, downsample, binary,
                 label_fraction, cache_dir, max_samples, max_eval)


def make_ssc_task(data_dir, eval_split: str = "test", T: int = 100,
                  time_window: int | None = 10_000, origin: str = "zero", downsample=None,
                  binary: bool = False, label_fraction: float = 0.5, cache_dir=None,
                  max_samples: int | None = None, max_eval: int | None = None):
    """The SSC task (35 classes): train on ``ssc_train.h5``, evaluate on
    ``ssc_<eval_split>.h5`` (``"valid"`` or ``"test"``); options as SHD's."""
    if eval_split not in ("valid", "test"):
        raise ValueError(f"eval_split must be 'valid' or 'test', got {eval_split!r}")
    return _task("SSC", eval_split, data_dir, T, time_window, origin, downsample, binary,
                 label_fraction, cache_dir, max_samples, max_eval)
