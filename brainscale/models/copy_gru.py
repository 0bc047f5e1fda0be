"""The copy task's network: a GRU over one-hot tokens and a linear readout.

Per-sample step: ``x (n_classes,) -> logits (n_classes,)``.
"""
from __future__ import annotations

import dataclasses

from flax import nnx

from brainscale.models.options import option
from brainscale.nn.readout import LinearReadout
from brainscale.nn.rnn import GRU

__all__ = ["CopyGRU", "CopyGRUOptions"]


@dataclasses.dataclass(frozen=True)
class CopyGRUOptions:
    """The JSON options of the copy task's network (a config's ``model``)."""

    n_hidden: int = option(128, "GRU units")


class CopyGRU(nnx.Module):
    """One-hot token -> GRU(n_hidden) -> linear readout: ``logits = h @ W + b``.
    ``n_in``: the input width when it is not ``n_classes`` (e.g. the binary
    copy task's bit, bit, delimiter)."""

    def __init__(self, n_hidden: int, *, rngs, n_classes: int = 10, n_in: int | None = None):
        self.rnn = GRU(n_classes if n_in is None else int(n_in), n_hidden, rngs=rngs)
        self.out = LinearReadout(n_hidden, n_classes, rngs=rngs)

    def __call__(self, x):
        return self.out(self.rnn(x))
