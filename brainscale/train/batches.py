"""Checks on every batch before it reaches the learner.

A bad batch is rejected before any state changes (so the run's last
checkpoint stays what it was), with an error naming the step, the array and
what is wrong with it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["BatchError", "check_batch", "loss_per_label", "masked_cross_entropy"]


class BatchError(ValueError):
    """A task produced a batch the learner must not see."""


def check_batch(xs, ys, *, n_out: int, batch_size: int | None, where: str):
    """``xs`` (T, B, ...) finite floats; ``ys`` (T, B) integers in [-1, n_out)."""
    x = np.asarray(xs)
    y = np.asarray(ys)
    if x.ndim < 3:
        raise BatchError(f"{where}: inputs have shape {x.shape}, expected (T, B, *input_shape)")
    if y.shape != x.shape[:2]:
        raise BatchError(f"{where}: labels have shape {y.shape}, expected (T, B) = "
                         f"{x.shape[:2]} to match the inputs")
    if batch_size is not None and x.shape[1] != batch_size:
        raise BatchError(f"{where}: batch of {x.shape[1]} samples, the run uses {batch_size}")
    if not np.issubdtype(x.dtype, np.floating):
        raise BatchError(f"{where}: inputs have dtype {x.dtype}, expected a float type")
    bad = ~np.isfinite(x)
    if bad.any():
        t, b = np.argwhere(bad)[0][:2]
        raise BatchError(f"{where}: {int(bad.sum())} non-finite input value(s) (NaN or inf), "
                         f"first at time step {t}, sample {b}")
    if not np.issubdtype(y.dtype, np.integer):
        raise BatchError(f"{where}: labels have dtype {y.dtype}, expected integers")
    out = (y < -1) | (y >= n_out)
    if out.any():
        t, b = np.argwhere(out)[0]
        raise BatchError(f"{where}: label {int(y[t, b])} at time step {t}, sample {b} is out "
                         f"of range: the task has {n_out} classes (0..{n_out - 1}; -1 = no loss)")


def loss_per_label(loss: float, ys) -> float:
    """The learner's loss (a mean over all T x B entries, the unlabelled,
    -1, counted as 0) per labelled entry: ``loss * T B / n_labelled``."""
    ys = np.asarray(ys)
    return float(loss) * ys.size / max(int(np.sum(ys >= 0)), 1)


def masked_cross_entropy(outputs, ys) -> tuple[float, int]:
    """``(sum of per-step cross-entropy over labelled steps, their count)``."""
    z = np.asarray(outputs, dtype=np.float64)
    y = np.asarray(ys)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    mask = y >= 0
    picked = np.take_along_axis(logp, np.maximum(y, 0)[..., None], -1)[..., 0]
    return float(-np.sum(np.where(mask, picked, 0.0))), int(mask.sum())
