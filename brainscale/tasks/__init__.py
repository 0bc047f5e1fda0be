"""Offline tasks: real data shipped with scikit-learn and generated tasks.

Nothing here downloads anything. Every generator is seeded and deterministic.
Each task module also has ``make_task(**options)`` for training runs
(``brainscale.train``); the neuromorphic datasets are in ``brainscale.datasets``.
"""
from brainscale.tasks.copy_task import copy_batch
from brainscale.tasks.digits import (
    batches,
    latency_encode,
    load_digits_split,
    rank_order_encode,
    rate_encode,
)
from brainscale.tasks.dmts import dmts_batch, dmts_rates
from brainscale.tasks.evidence import evidence_batch

__all__ = [
    "load_digits_split",
    "rate_encode",
    "latency_encode",
    "rank_order_encode",
    "batches",
    "copy_batch",
    "dmts_batch",
    "dmts_rates",
    "evidence_batch",
]
