"""Samples -> JAX-ready batches (numpy only), and seeded batch order.

``collate`` stacks ``(frames (T_i, ...), label)`` pairs into ``xs`` float32
``(T, B, ...)`` (zero-padded or cut to ``T``) and ``ys`` int32 ``(T, B)``:
with ``n_i = min(T_i, T)``, the label sits on the last
``ceil(label_fraction * n_i)`` (at least one) of the sample's own steps and
-1 ("no loss") elsewhere, on padded steps and on padding rows.

``batch_indices`` is a pure function of ``(seed, step)``: the samples form
one endless stream, epoch ``e`` in the order
``np.random.default_rng([seed, e]).permutation(n)``; step ``s`` takes
positions ``s*B .. s*B + B - 1`` of it, so each epoch visits every sample
once, for any ``B`` (also ``B > n``).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["collate", "batch_indices", "subset_indices"]


def collate(samples, T: int, label_fraction: float = 1.0, batch_size: int | None = None):
    """``(xs, ys)`` of the list ``samples``; ``batch_size`` (default
    ``len(samples)``) adds all-zero rows labelled -1 throughout."""
    T = int(T)
    if T < 1:
        raise ValueError(f"T must be a positive number of steps, got {T}")
    if not 0.0 < float(label_fraction) <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction}")
    B = len(samples) if batch_size is None else int(batch_size)
    if not samples or len(samples) > B:
        raise ValueError(f"need 1..{B} samples for a batch of {B}, got {len(samples)}")
    shape = np.shape(samples[0][0])[1:]
    xs = np.zeros((T, B) + tuple(shape), np.float32)
    ys = np.full((T, B), -1, np.int32)
    for b, (frames, label) in enumerate(samples):
        frames = np.asarray(frames)
        if frames.shape[1:] != shape:
            raise ValueError(f"sample {b} has frames of shape {frames.shape[1:]}, sample 0 "
                             f"has {shape}")
        if int(label) != label or label < 0:
            raise ValueError(f"sample {b} has label {label!r}; labels are ints >= 0")
        n = min(len(frames), T)
        xs[:n, b] = frames[:n]
        if n:
            n_lab = min(n, max(1, math.ceil(float(label_fraction) * n)))
            ys[n - n_lab:n, b] = int(label)
    return xs, ys


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Sample indices of training batch ``step`` (see the module docstring)."""
    n, B = int(n), int(batch_size)
    if n < 1 or B < 1:
        raise ValueError(f"need n >= 1 samples and batch_size >= 1, got {n}, {B}")
    pos = int(step) * B + np.arange(B)
    epoch, off = pos // n, pos % n
    out = np.empty(B, np.int64)
    for e in np.unique(epoch):
        perm = np.random.default_rng([int(seed), int(e)]).permutation(n)
        out[epoch == e] = perm[off[epoch == e]]
    return out


def subset_indices(n: int, k: int | None, seed: int = 0) -> np.ndarray:
    """A fixed subset of ``k`` of ``n`` samples in increasing order (all of
    them when ``k`` is None or ``>= n``), drawn with ``default_rng([seed,
    n])`` so classes stored in order are mixed."""
    if k is None or int(k) >= n:
        return np.arange(n)
    if int(k) < 1:
        raise ValueError(f"a subset needs at least 1 sample, got {k}")
    return np.sort(np.random.default_rng([int(seed), int(n)]).permutation(n)[:int(k)])
