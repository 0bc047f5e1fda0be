"""Writers of the exact on-disk formats the readers take (for tests and for
the examples' ``--synthetic`` mode), so the real reading path is exercised.

* N-MNIST ``.bin``: 5 bytes per event, as ``tonic.io.read_mnist_file``
  decodes them: ``b0 = x``, ``b1 = y``, ``b2 = p << 7 | t >> 16``,
  ``b3 = (t >> 8) & 255``, ``b4 = t & 255`` (23-bit timestamp in us; ``y =
  240`` is reserved for timestamp-overflow markers).
* SHD / SSC HDF5: ``spikes/times`` (variable-length float16, seconds),
  ``spikes/units`` (variable-length uint16), ``labels`` (uint16),
  ``extra/keys`` (byte strings), ``extra/speaker`` (uint16), and for SHD
  optionally ``extra/meta_info/{gender, age, body_height}``.
* DVS Gesture ``.npy``: an ``(N, 4)`` array with columns x, y, p, t[ms].
"""
from __future__ import annotations

import os

import numpy as np

from brainscale.datasets.errors import require

__all__ = ["write_nmnist_bin", "write_hsd_h5", "write_dvs_npy", "NMNIST_OVERFLOW_Y",
           "NMNIST_MAX_T"]

NMNIST_OVERFLOW_Y = 240
NMNIST_MAX_T = 2 ** 23 - 1


def _parent(path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)


def write_nmnist_bin(path, x, y, p, t) -> None:
    """Write events (x, y in 0..255, p in {0, 1}, t in 0..2**23-1 us) as an
    N-MNIST ``.bin`` file."""
    x, y, p, t = (np.asarray(v, dtype=np.int64).reshape(-1) for v in (x, y, p, t))
    if not len(x) == len(y) == len(p) == len(t):
        raise ValueError("x, y, p, t must have the same length")
    if len(x) and (x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 255):
        raise ValueError("N-MNIST coordinates are 8-bit: 0 <= x, y <= 255")
    if np.any(y == NMNIST_OVERFLOW_Y):
        raise ValueError(f"y = {NMNIST_OVERFLOW_Y} marks timestamp overflow in N-MNIST files")
    if np.any((p != 0) & (p != 1)):
        raise ValueError("N-MNIST polarity is one bit: p in {0, 1}")
    if len(t) and (t.min() < 0 or t.max() > NMNIST_MAX_T):
        raise ValueError(f"N-MNIST timestamps are 23-bit: 0 <= t <= {NMNIST_MAX_T} us")
    raw = np.empty((len(x), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | (t >> 16)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    _parent(path)
    with open(path, "wb") as f:
        f.write(raw.tobytes())


def write_hsd_h5(path, times, units, labels, keys, speakers=None, meta_info=None,
                 times_dtype=np.float16, units_dtype=np.uint16) -> None:
    """Write an SHD / SSC HDF5 file: ``times[i]`` (s) and ``units[i]`` are the
    spikes of sample ``i``; ``keys`` the class names; ``speakers`` one id per
    sample (zeros by default); ``meta_info`` an optional dict of per-speaker
    arrays (SHD's gender, age, body_height)."""
    h5py = require("h5py")
    n = len(labels)
    if not len(times) == len(units) == n:
        raise ValueError("times, units and labels must have one entry per sample")
    speakers = np.zeros(n, np.uint16) if speakers is None else np.asarray(speakers, np.uint16)
    _parent(path)
    with h5py.File(path, "w") as f:
        t_ds = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.dtype(times_dtype)))
        u_ds = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.dtype(units_dtype)))
        for i in range(n):
            t_ds[i] = np.asarray(times[i], dtype=times_dtype)
            u_ds[i] = np.asarray(units[i], dtype=units_dtype)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_dataset("extra/keys", data=np.array([str(k).encode() for k in keys]))
        f.create_dataset("extra/speaker", data=speakers)
        for name, values in (meta_info or {}).items():
            f.create_dataset(f"extra/meta_info/{name}", data=np.asarray(values))


def write_dvs_npy(path, x, y, p, t_ms, dtype=np.int64) -> None:
    """Write DVS Gesture events as an ``(N, 4)`` ``.npy`` of rows x, y, p, t[ms]."""
    cols = [np.asarray(v).reshape(-1) for v in (x, y, p, t_ms)]
    if len({len(c) for c in cols}) != 1:
        raise ValueError("x, y, p, t_ms must have the same length")
    _parent(path)
    np.save(path, np.stack(cols, axis=1).astype(dtype), allow_pickle=False)
