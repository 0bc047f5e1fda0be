"""Generated stroke characters: an offline stand-in for Omniglot's many
classes with few examples each (no download).

A class is a fixed random set of 2-4 strokes, each a polyline through 3
points in the unit square. A sample of a class draws its strokes again
under a random small affine map (rotation, scale, shift) and per-point
jitter, and renders them as anti-aliased lines of fixed width on a
``size x size`` grid. The generator is numpy only and a pure function of
its seed. Images come out as float32 in [0, 1], shape (N, size * size),
like ``brainscale.tasks.digits``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["class_strokes", "render", "stroke_characters"]


def class_strokes(n_classes: int, seed: int = 0) -> list[np.ndarray]:
    """Per class an array (n_strokes, 3, 2) of polyline points."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.15, 0.85, (int(rng.integers(2, 5)), 3, 2)) for _ in range(n_classes)]


def render(strokes: np.ndarray, size: int, rng, rotate=0.25, scale=0.1, shift=0.06,
           jitter=0.02, width=0.3) -> np.ndarray:
    """One sample of a character: (size * size,) float32 in [0, 1].
    ``rotate`` (radians), ``scale``, ``shift`` and ``jitter`` bound the
    random distortions; ``width`` is the line half-width in pixels."""
    a = rng.uniform(-rotate, rotate)
    s = 1.0 + rng.uniform(-scale, scale)
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = (strokes - 0.5) @ rot.T + 0.5 + rng.uniform(-shift, shift, 2)
    pts = pts + rng.normal(0.0, jitter, pts.shape)
    grid = (np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"), -1)
            + 0.5) / size                                           # (size, size, 2) centres
    img = np.zeros((size, size))
    for line in pts:
        for p, q in zip(line[:-1], line[1:]):
            d = q - p
            t = np.clip(((grid - p) @ d) / max(d @ d, 1e-12), 0.0, 1.0)
            dist = np.linalg.norm(grid - (p + t[..., None] * d), axis=-1) * size
            img = np.maximum(img, np.clip(1.0 + width - dist, 0.0, 1.0))
    return img.reshape(-1).astype(np.float32)


def stroke_characters(n_classes: int, per_class: int, size: int = 12, seed: int = 0):
    """``(x, y)``: ``per_class`` samples of each of ``n_classes`` generated
    characters, x of shape (n_classes * per_class, size * size), y int32."""
    if n_classes < 1 or per_class < 1 or size < 4:
        raise ValueError(f"need n_classes >= 1, per_class >= 1, size >= 4; got {n_classes}, "
                         f"{per_class}, {size}")
    chars = class_strokes(n_classes, seed)
    rng = np.random.default_rng(seed + 1)
    x = np.stack([render(c, size, rng) for c in chars for _ in range(per_class)])
    y = np.repeat(np.arange(n_classes, dtype=np.int32), per_class)
    return x, y
