"""A training-run ``Task`` from a training and an evaluation ``FrameDataset``.

Training batch ``step`` holds the samples ``batch_indices`` picks (a pure
function of ``(seed, step)``) among the training subset; evaluation runs
over the evaluation subset in order, the last batch padded with rows
labelled -1. Batches are built when asked for, so a large test split is
never held in memory at once. The default model is
``brainscale.models.recurrent_snn.recurrent_snn`` on the flattened frames.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from brainscale.datasets.collate import batch_indices, collate, subset_indices
from brainscale.datasets.dataset import FrameDataset
from brainscale.models.recurrent_snn import RecurrentSNNOptions
from brainscale.train.task import Task

__all__ = ["frame_task", "EvalBatches"]


class EvalBatches(Sequence):
    """The evaluation batches of ``dataset[indices]``, built on access."""

    def __init__(self, dataset: FrameDataset, indices, T: int, label_fraction: float,
                 batch_size: int):
        self.dataset, self.indices = dataset, np.asarray(indices)
        self.T, self.label_fraction, self.batch_size = T, label_fraction, int(batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        k %= len(self)
        idx = self.indices[k * self.batch_size:(k + 1) * self.batch_size]
        return collate([self.dataset[i] for i in idx], self.T, self.label_fraction,
                       batch_size=self.batch_size)


def frame_task(name: str, train: FrameDataset, test: FrameDataset, *, T: int,
               label_fraction: float, max_samples: int | None, max_eval: int | None,
               model_defaults: dict, options: dict) -> Task:
    """Build the ``Task`` (metric ``"trial"``); ``T`` is the number of steps
    per batch, ``max_samples`` / ``max_eval`` cap the two splits by a fixed
    random subset (``subset_indices``)."""
    if T is None or int(T) < 1:
        raise ValueError(f"a task needs a fixed number of steps T >= 1, got {T}")
    if not train.spec.flatten:
        raise ValueError("the default model takes flat input: use a FrameSpec with flatten=True")
    if train.n_classes != test.n_classes or train.spec != test.spec:
        raise ValueError("training and evaluation splits differ in classes or FrameSpec")
    train_idx = subset_indices(len(train), max_samples)
    eval_idx = subset_indices(len(test), max_eval)
    n_in = int(np.prod(train.spec.frame_shape))
    n_out = train.n_classes

    def train_batch(seed, step, batch_size):
        pick = train_idx[batch_indices(len(train_idx), batch_size, seed, step)]
        return collate([train[i] for i in pick], T, label_fraction)

    def eval_batches(batch_size):
        return EvalBatches(test, eval_idx, T, label_fraction, batch_size)

    def make_model(model_options, seed):
        from brainscale.models.recurrent_snn import recurrent_snn

        return recurrent_snn(n_in, n_out, seed=int(seed), **{**model_defaults,
                                                             **dict(model_options)})

    return Task(name=name, n_in=n_in, n_out=n_out, train_batch=train_batch,
                eval_batches=eval_batches, make_model=make_model, metric="trial",
                options=dict(options), model_defaults=dict(model_defaults),
                model_options=RecurrentSNNOptions)
