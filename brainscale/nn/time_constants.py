"""Decay factors from time constants, checked.

``decay(dt, tau)`` is ``exp(-dt / tau)``: the per-step factor of a leak
with time constant ``tau`` at step ``dt``. Both must be finite and > 0; a
zero, negative, NaN or non-numeric value is a ``ValueError`` naming the
parameter (never a ``ZeroDivisionError``, never a silent decay of 1 or 0).
"""
from __future__ import annotations

import math

__all__ = ["decay", "positive"]


def positive(value, name: str) -> float:
    """``value`` as a float, finite and > 0, or a ``ValueError`` naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return v


def decay(dt, tau, name: str = "tau") -> float:
    """``exp(-dt / tau)`` for a checked step ``dt`` and time constant ``tau``."""
    return math.exp(-positive(dt, "dt") / positive(tau, name))
