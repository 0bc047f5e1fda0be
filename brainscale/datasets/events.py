"""Reading events from the three on-disk formats into one structured array.

Every reader returns ``EVENTS`` records ``(x, y, t, p)`` (int64; ``t`` in
microseconds, as tonic uses), so binning has one code path:

* N-MNIST ``.bin``: 5 bytes per event, decoded by ``tonic.io.read_mnist_file``.
* SHD / SSC HDF5: ``spikes/times[i]`` (seconds) and ``spikes/units[i]``;
  ``t = trunc(times * 1e6)`` as tonic's ``HSD`` does, ``x = unit``, ``y = p = 0``.
* DVS Gesture ``.npy``: rows ``(x, y, p, t_ms)``; ``t = trunc(t_ms * 1000)``.

Malformed input raises ``DatasetError`` naming the file (and sample): an
unreadable, empty or truncated file, a folder where a file belongs, a
mistyped field, and timestamps a user would call absurd: negative, or
longer than ``ABSURD`` (1000) times the dataset's documented recording
length (they would overflow the int64 microseconds or the frame binning,
and were once silently dropped).
"""
from __future__ import annotations

import os

import numpy as np

from brainscale.datasets.errors import DatasetError, require

__all__ = ["EVENTS", "HSD_KEYS", "ABSURD", "read_nmnist", "HSDFile", "read_dvs_gesture",
           "check_events", "check_times"]

EVENTS = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
HSD_KEYS = ("spikes/times", "spikes/units", "labels")
ABSURD = 1000
SHD_SECONDS, DVS_GESTURE_SECONDS = 1.0, 6.0      # documented recording lengths


def check_times(values: np.ndarray, seconds: float, where, unit: str = "us", scale: float = 1.0):
    """Timestamps in ``unit`` (``scale`` microseconds each) must lie in
    [0, ABSURD x ``seconds``]; a ``DatasetError`` naming the first that does
    not."""
    t = np.asarray(values, dtype=np.float64) * scale
    limit = ABSURD * seconds * 1e6
    bad = ~((t >= 0) & (t <= limit))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(where, f"event {i} has timestamp {t[i] / scale:g} {unit}, outside "
                                  f"[0, {limit / scale:g}] {unit} ({ABSURD} x the dataset's "
                                  f"{seconds:g} s recordings); {int(bad.sum())} such event(s)")


def read_nmnist(path) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file (the length must be a multiple of
    5 bytes: x 8 bits, y 8 bits, polarity 1 bit, timestamp 23 bits)."""
    if not os.path.isfile(path):
        raise DatasetError(path, "is not a regular file (an N-MNIST sample is a .bin file)")
    size = os.path.getsize(path)
    if size == 0:
        raise DatasetError(path, "N-MNIST event file is empty (0 events)")
    if size % 5:
        raise DatasetError(path, f"N-MNIST event file has {size} bytes, not a multiple of 5 "
                                 "(each event is 40 bits: x, y, polarity, 23-bit timestamp)")
    return require("tonic.io").read_mnist_file(str(path), dtype=EVENTS)


class HSDFile:
    """One SHD / SSC HDF5 file, opened on first use and kept open.

    ``labels`` (int64, all samples) is read on opening; ``events(i)`` reads
    sample ``i``. A missing required key, mismatched lengths or non-finite
    times are a ``DatasetError`` naming the file, the key and the sample.
    """

    def __init__(self, path):
        self.path = str(path)
        self._file = None
        self._labels = None

    def _open(self):
        if self._file is None:
            h5py = require("h5py")
            if not os.path.isfile(self.path):
                raise DatasetError(self.path, "is not a regular file (SHD / SSC splits are "
                                              "HDF5 files)")
            try:
                f = h5py.File(self.path, "r")
            except Exception as e:          # noqa: BLE001 - h5py raises OSError variants
                raise DatasetError(self.path, f"not a readable HDF5 file ({type(e).__name__}: "
                                              f"{e})") from None
            for key in HSD_KEYS:
                if key not in f:
                    f.close()
                    raise DatasetError(self.path, f"HDF5 file has no {key!r} (the SHD/SSC "
                                                  f"layout needs {', '.join(HSD_KEYS)})")
            n = [len(f[k]) for k in HSD_KEYS]
            if len(set(n)) != 1:
                f.close()
                raise DatasetError(self.path, "HDF5 datasets differ in length: " + ", ".join(
                    f"{k}: {m}" for k, m in zip(HSD_KEYS, n)))
            labels = np.asarray(f["labels"][()])
            if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
                f.close()
                raise DatasetError(self.path, f"'labels' must be a 1-d integer array, got "
                                              f"shape {labels.shape} dtype {labels.dtype}")
            self._file, self._labels = f, labels.astype(np.int64)
        return self._file

    @property
    def labels(self) -> np.ndarray:
        self._open()
        return self._labels

    def __len__(self) -> int:
        return len(self.labels)

    def events(self, i: int) -> np.ndarray:
        f = self._open()
        where = f"{self.path} (sample {i})"
        try:
            times, units = np.asarray(f["spikes/times"][i]), np.asarray(f["spikes/units"][i])
        except Exception as e:              # noqa: BLE001 - a truncated or damaged dataset
            raise DatasetError(where, f"unreadable sample ({type(e).__name__}: {e})") from None
        if not (np.issubdtype(times.dtype, np.floating) or np.issubdtype(times.dtype,
                                                                          np.integer)):
            raise DatasetError(where, f"'spikes/times' must be numbers (seconds), got dtype "
                                      f"{times.dtype}")
        times = times.astype(np.float64)
        if times.shape != units.shape or times.ndim != 1:
            raise DatasetError(where, f"'spikes/times' has shape {times.shape} but "
                                      f"'spikes/units' has shape {units.shape}")
        if not np.all(np.isfinite(times)):
            raise DatasetError(where, f"'spikes/times' holds {int(np.sum(~np.isfinite(times)))}"
                                      " non-finite value(s)")
        if units.size and not np.issubdtype(units.dtype, np.integer):
            raise DatasetError(where, f"'spikes/units' must be integers, got {units.dtype}")
        check_times(times, SHD_SECONDS, where, unit="s", scale=1e6)
        make = require("tonic.io").make_structured_array
        return make(units, 0, times * 1e6, 0, dtype=EVENTS)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


def read_dvs_gesture(path) -> np.ndarray:
    """Events of one DVS Gesture ``.npy`` (tonic's preprocessed release):
    an ``(N, 4)`` numeric array with columns x, y, p, t in milliseconds."""
    if not os.path.isfile(path):
        raise DatasetError(path, "is not a regular file (a DVS Gesture sample is a .npy file)")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:                  # noqa: BLE001 - empty, truncated, not .npy
        raise DatasetError(path, f"not a readable numeric .npy array ({type(e).__name__}: "
                                 f"{e or 'empty file'})") from None
    if not isinstance(arr, np.ndarray):
        getattr(arr, "close", lambda: None)()          # an .npz archive holds its file
        raise DatasetError(path, "not a single .npy array")
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DatasetError(path, f"DVS Gesture events must have shape (N, 4) with columns "
                                 f"x, y, p, t[ms]; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise DatasetError(path, f"DVS Gesture events must be numeric, got dtype {arr.dtype}")
    if len(arr) == 0:
        raise DatasetError(path, "DVS Gesture recording holds no events")
    if not np.all(np.isfinite(arr)):
        raise DatasetError(path, "DVS Gesture events hold non-finite values")
    a = arr.astype(np.float64)
    check_times(a[:, 3], DVS_GESTURE_SECONDS, path, unit="ms", scale=1e3)
    make = require("tonic.io").make_structured_array
    return make(a[:, 0], a[:, 1], a[:, 3] * 1000.0, a[:, 2], dtype=EVENTS)


def check_events(events: np.ndarray, sensor_size, source) -> None:
    """Every coordinate inside ``sensor_size = (W, H, P)``: ``0 <= x < W``,
    ``0 <= y < H``, ``0 <= p < P``; otherwise a ``DatasetError`` naming the
    source, the field, the offending value and the sensor size."""
    if len(events) == 0:
        return
    for field, size in zip(("x", "y", "p"), sensor_size):
        v = events[field]
        hi, lo = int(v.max()), int(v.min())
        if hi >= size:
            raise DatasetError(source, f"event field {field!r} has max value {hi}, outside the "
                                       f"sensor size {tuple(sensor_size)} (W, H, P): "
                                       f"{field} must be < {size}")
        if lo < 0:
            raise DatasetError(source, f"event field {field!r} has min value {lo}, outside the "
                                       f"sensor size {tuple(sensor_size)} (W, H, P): "
                                       f"{field} must be >= 0")
