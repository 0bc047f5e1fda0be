"""Finite-number guards: a training step is kept only if what it produced is
finite, and a log record is valid JSON.

``first_nonfinite(tree)`` checks every float leaf on the device in one
jitted pass and names the first leaf holding NaN or inf (None if all are
finite). ``json_record`` writes non-finite floats as ``null`` (JSON has no
NaN), so every line of ``metrics.jsonl`` parses with any JSON reader.
"""
from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["first_nonfinite", "json_record", "nonfinite_keys"]


def _all_finite(leaves):
    import jax.numpy as jnp

    return jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]) if leaves else jnp.ones(0, bool)


_jitted = None


def first_nonfinite(tree, prefix: str = "") -> str | None:
    """The pytree path of the first float leaf of ``tree`` with a NaN or inf."""
    global _jitted
    import jax
    import jax.numpy as jnp

    flat = [(p, a) for p, a in jax.tree_util.tree_flatten_with_path(tree)[0]
            if jnp.issubdtype(jnp.result_type(a), jnp.inexact)]
    if not flat:
        return None
    if _jitted is None:
        _jitted = jax.jit(_all_finite)
    ok = np.asarray(_jitted([a for _, a in flat]))
    bad = np.flatnonzero(~ok)
    return None if bad.size == 0 else prefix + jax.tree_util.keystr(flat[bad[0]][0])


def nonfinite_keys(obj, path: str = "") -> list[str]:
    """Dotted keys of the non-finite numbers in a JSON-like object."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [path or "(value)"]
    if isinstance(obj, dict):
        return [k for key, v in obj.items()
                for k in nonfinite_keys(v, f"{path}.{key}" if path else str(key))]
    if isinstance(obj, (list, tuple)):
        return [k for i, v in enumerate(obj) for k in nonfinite_keys(v, f"{path}[{i}]")]
    return []


def _nulled(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nulled(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nulled(v) for v in obj]
    return obj


def json_record(rec: dict) -> str:
    """One line of JSON; NaN and inf become null."""
    return json.dumps(_nulled(rec), allow_nan=False)
