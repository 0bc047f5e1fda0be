"""Offline tasks: real data shipped with scikit-learn and generated tasks.

Nothing here downloads anything. Every generator is seeded and deterministic.
"""
from brainscale.tasks.digits import (
    load_digits_split,
    rate_encode,
    latency_encode,
    rank_order_encode,
    batches,
)
from brainscale.tasks.dmts import dmts_batch, dmts_rates

__all__ = [
    "load_digits_split",
    "rate_encode",
    "latency_encode",
    "rank_order_encode",
    "batches",
    "dmts_batch",
    "dmts_rates",
]
