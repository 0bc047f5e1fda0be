"""The binary copy task of the RTRL literature (Mujika et al. 2018, Menick
et al. 2021), whose string length grows with a curriculum.

One trial of length L (``T = 2 L + 1`` steps, then optional padding)::

    step     0 .. L-1        L            L+1 .. 2L       2L+1 .. T_pad-1
    input    b_1 .. b_L      delimiter    0 ...           0 ...
    label    -1 ...          -1           b_1 .. b_L      -1 ...

Inputs are 3 wide (bit 0, bit 1, delimiter), one-hot while the string and
the delimiter are shown and all zero afterwards; labels are the bits (two
classes) during recall and -1 (no loss) elsewhere. A network that recalls
nothing scores 1 bit per recalled token.
"""
from __future__ import annotations

import numpy as np

from brainscale.tasks.seeding import numpy_rng

__all__ = ["binary_copy_batch", "padded_length", "N_IN", "N_CLASSES"]

N_IN = 3          # bit 0, bit 1, delimiter
N_CLASSES = 2


def padded_length(L: int, multiple: int = 8) -> int:
    """``2 L + 1`` rounded up to a multiple of ``multiple``: one compiled
    program serves several lengths."""
    T = 2 * int(L) + 1
    return -(-T // multiple) * multiple


def binary_copy_batch(key_or_seed, batch_size: int, L: int, T: int | None = None):
    """``(xs (T, B, 3) float32, ys (T, B) int32)`` for strings of ``L`` bits;
    ``T`` >= 2 L + 1 pads the end with silent, unlabelled steps."""
    B, L = int(batch_size), int(L)
    T = 2 * L + 1 if T is None else int(T)
    if B < 1 or L < 1 or T < 2 * L + 1:
        raise ValueError(f"need batch_size >= 1, L >= 1 and T >= 2 L + 1; got {batch_size}, "
                         f"{L}, {T}")
    bits = numpy_rng(key_or_seed).integers(0, 2, size=(L, B), dtype=np.int32)
    xs = np.zeros((T, B, N_IN), np.float32)
    xs[np.arange(L)[:, None], np.arange(B)[None], bits] = 1.0
    xs[L, :, 2] = 1.0
    ys = np.full((T, B), -1, np.int32)
    ys[L + 1:2 * L + 1] = bits
    return xs, ys
