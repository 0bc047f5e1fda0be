"""Spatial pooling of one channels-first sample ``(C, H, W)``, and
``Flatten``, the step from feature maps to a vector for a dense layer.

Pooling sums (or averages) each channel over a sliding window; it has no
weights and no state. Sum pooling is what spiking CNN tools use between
convolutions (sinabs, Speck): a sum of spikes is still an integer count a
following layer can weigh. Both use ``lax.reduce_window``; the compiler
treats the window sum as an op that mixes neurons, like the weight op that
follows it.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from brainscale.nn.conv import out_size, pair

__all__ = ["SumPool2d", "AvgPool2d", "Flatten"]


class SumPool2d(nnx.Module):
    """Sum pooling over ``kernel_size`` windows of each channel::

        y[c, i, j] = sum_{p < kh, q < kw} x_pad[c, i s_h + p, j s_w + q]

    ``x`` is ``(C, H, W)``, ``y`` ``(C, H', W')`` with
    ``H' = floor((H + 2 p_h - kh) / s_h) + 1`` (likewise ``W'``); ``x_pad``
    adds ``padding`` zeros on both sides. ``stride`` defaults to
    ``kernel_size`` (non-overlapping windows, as in PyTorch).
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)

    def output_shape(self, input_shape):
        """``(C, H', W')`` for an input of shape ``(C, H, W)``."""
        shape = tuple(int(n) for n in input_shape)
        name = type(self).__name__
        if len(shape) != 3:
            raise ValueError(f"{name} takes (C, H, W) per sample, got {shape}")
        hw = tuple(out_size(n, k, s, p, p) for n, k, s, p in
                   zip(shape[1:], self.kernel_size, self.stride, self.padding))
        if min(hw) < 1:
            raise ValueError(f"{name}: input {shape} is smaller than the window "
                             f"{self.kernel_size}")
        return shape[:1] + hw

    def _window_sum(self, x):
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__} takes one sample (C, H, W), got shape "
                             f"{x.shape}; use jax.vmap for a batch")
        # a concrete 0 lets JAX pick its differentiable window-sum primitive
        return jax.lax.reduce_window(
            x, np.zeros((), x.dtype), jax.lax.add, (1,) + self.kernel_size,
            (1,) + self.stride, ((0, 0),) + tuple((p, p) for p in self.padding))

    def __call__(self, x):
        return self._window_sum(x)


class AvgPool2d(SumPool2d):
    """Average pooling: ``SumPool2d``'s window sum divided by ``kh * kw``.
    Padded zeros count in the average (PyTorch's default
    ``count_include_pad=True``), so every window divides by the same number.
    """

    def __call__(self, x):
        kh, kw = self.kernel_size
        return self._window_sum(x) / (kh * kw)


class Flatten(nnx.Module):
    """Merge the axes ``start_dim .. end_dim`` (inclusive, negative counts
    from the end) of one sample into one, in C (row-major) order::

        (C, H, W) -> (C * H * W,)          start_dim=0, end_dim=-1 (default)

    Axes count within one sample (no batch axis), as NIR's ``Flatten``
    counts them, so PyTorch's ``nn.Flatten()`` (``start_dim=1`` over a
    batch) is ``Flatten(0)`` here. No weights, no state.
    """

    def __init__(self, start_dim=0, end_dim=-1):
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def _axes(self, ndim):
        lo = self.start_dim + ndim if self.start_dim < 0 else self.start_dim
        hi = self.end_dim + ndim if self.end_dim < 0 else self.end_dim
        if not 0 <= lo <= hi < ndim:
            raise ValueError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) "
                             f"does not fit an input of {ndim} axes")
        return lo, hi

    def output_shape(self, input_shape):
        shape = tuple(int(n) for n in input_shape)
        lo, hi = self._axes(len(shape))
        merged = 1
        for n in shape[lo:hi + 1]:
            merged *= n
        return shape[:lo] + (merged,) + shape[hi + 1:]

    def __call__(self, x):
        return x.reshape(self.output_shape(x.shape))
