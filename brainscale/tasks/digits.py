"""scikit-learn's 8x8 handwritten digits (1797 samples, bundled with the
package, no download) and spike encoders for them.

Images come out as float32 in [0, 1] (the raw values are 0..16), labels as
int32. Encoders take images of shape (N, 64) or (N, 8, 8) and return spike
trains of shape (T, N, 64), float32 with values 0/1.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = [
    "load_digits_split",
    "rate_encode",
    "latency_encode",
    "rank_order_encode",
    "batches",
]


def load_digits_split(test_fraction: float = 0.2, seed: int = 0):
    """Load scikit-learn's digits and split them, stratified by class.

    Returns ``(x_train, y_train, x_test, y_test)``: images float32 in [0, 1]
    with shape (N, 64), labels int32 in 0..9. The split is deterministic for
    a given ``seed``: within each class a seeded permutation puts
    ``round(test_fraction * n_class)`` samples into the test set; both sets
    are then shuffled with the same seed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits  # lazy: scikit-learn is an extra

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float32) / 16.0
    y = np.asarray(data.target, dtype=np.int32)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_fraction * len(idx)))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train_idx = np.concatenate(train_idx)
    test_idx = np.concatenate(test_idx)
    train_idx = train_idx[rng.permutation(len(train_idx))]
    test_idx = test_idx[rng.permutation(len(test_idx))]
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _flat(images) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    return x.reshape(x.shape[0], -1)


def rate_encode(images, T: int, rng_key, max_rate: float = 0.5):
    """Bernoulli rate code: at each of ``T`` steps pixel ``j`` of sample
    ``n`` spikes with probability ``images[n, j] * max_rate``.

    ``max_rate`` is the spike probability per step of a pixel of intensity 1
    (so it must lie in [0, 1]). ``rng_key`` is a ``jax.random`` key or an
    int seed. Returns a jax float32 array of shape (T, N, D). Works on traced
    values too (usable inside ``jax.jit`` when ``T`` is static).
    """
    import jax
    import jax.numpy as jnp

    if not 0.0 <= max_rate <= 1.0:
        raise ValueError(f"max_rate is a probability per step, got {max_rate}")
    if isinstance(rng_key, (int, np.integer)):
        rng_key = jax.random.PRNGKey(int(rng_key))
    x = jnp.asarray(images, dtype=jnp.float32)
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x[None]
    p = jnp.clip(x, 0.0, 1.0) * max_rate
    u = jax.random.uniform(rng_key, (T,) + p.shape, dtype=jnp.float32)
    return (u < p[None]).astype(jnp.float32)


def latency_encode(images, T: int, t_max: int | None = None) -> np.ndarray:
    """Latency (time-to-first-spike) code: each pixel spikes once, at step
    ``t = round((1 - intensity) * t_max)`` (``t_max`` defaults to ``T - 1``),
    so brighter pixels fire earlier; pixels of intensity 0 never fire.

    Returns a numpy float32 array of shape (T, N, D).
    """
    x = np.clip(_flat(images), 0.0, 1.0)
    if t_max is None:
        t_max = T - 1
    if not 0 <= t_max <= T - 1:
        raise ValueError(f"t_max must be in [0, T-1], got {t_max} with T={T}")
    t = np.rint((1.0 - x) * t_max).astype(np.int64)
    out = np.zeros((T,) + x.shape, dtype=np.float32)
    n_idx, j_idx = np.nonzero(x > 0)
    out[t[n_idx, j_idx], n_idx, j_idx] = 1.0
    return out


def rank_order_encode(images, T: int, mode: str = "spread") -> np.ndarray:
    """Rank-order code: the nonzero pixels of each image fire once each, in
    order of decreasing intensity (ties broken by pixel index); zero pixels
    never fire.

    ``mode="one_per_step"``: the k-th pixel (k = 0, 1, ...) fires at step k;
    pixels of rank >= T do not fire. ``mode="spread"``: the K nonzero pixels
    are spread evenly over the T steps, rank k firing at ``floor(k * T / K)``
    (several per step when K > T).

    Returns a numpy float32 array of shape (T, N, D).
    """
    if mode not in ("spread", "one_per_step"):
        raise ValueError(f"mode must be 'spread' or 'one_per_step', got {mode!r}")
    x = np.clip(_flat(images), 0.0, 1.0)
    N, D = x.shape
    out = np.zeros((T, N, D), dtype=np.float32)
    for n in range(N):
        nz = np.flatnonzero(x[n] > 0)
        if nz.size == 0:
            continue
        # stable sort on -intensity: ties keep pixel-index order
        order = nz[np.argsort(-x[n, nz], kind="stable")]
        k = np.arange(order.size)
        if mode == "one_per_step":
            keep = k < T
            out[k[keep], n, order[keep]] = 1.0
        else:
            t = (k * T) // order.size
            out[t, n, order] = 1.0
    return out


def batches(x, y, batch_size: int, rng=None, drop_last: bool = False) -> Iterator:
    """Iterate over ``(x_batch, y_batch)`` along the first axis.

    ``rng``: ``None`` keeps the order; an int seed or a
    ``numpy.random.Generator`` shuffles (deterministic for a seed).
    ``drop_last`` drops a final short batch (useful to keep jitted shapes
    fixed).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y lengths differ: {len(x)} vs {len(y)}")
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    n = len(x)
    if rng is None:
        idx = np.arange(n)
    else:
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        idx = rng.permutation(n)
    for start in range(0, n, batch_size):
        sel = idx[start:start + batch_size]
        if drop_last and len(sel) < batch_size:
            break
        yield x[sel], y[sel]
