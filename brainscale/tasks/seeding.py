"""One way to turn whatever a user passes as a seed into a numpy Generator,
so that every generated task is reproducible from an int, ``[seed, step]``,
a Generator or a ``jax.random`` key."""
from __future__ import annotations

import numpy as np

__all__ = ["numpy_rng"]


def numpy_rng(key_or_seed) -> np.random.Generator:
    """A numpy Generator from an int seed, a sequence of ints (e.g. ``[seed,
    step]``), a Generator (returned as is) or a ``jax.random`` key (its raw
    key data seeds the generator)."""
    if isinstance(key_or_seed, np.random.Generator):
        return key_or_seed
    if isinstance(key_or_seed, (int, np.integer)):
        return np.random.default_rng(int(key_or_seed))
    if isinstance(key_or_seed, (list, tuple)):
        return np.random.default_rng([int(s) for s in key_or_seed])
    import jax

    key = key_or_seed
    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel().tolist())
