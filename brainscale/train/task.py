"""What a training run needs from a task: seeded batches and a model.

A ``Task`` is plain data plus functions, so a new task needs no change to
the trainer. Batches are a pure function of ``(seed, step)``: a resumed run
draws exactly the batches the interrupted one would have drawn, without any
iterator state in the checkpoint.

Shapes: ``xs`` float32 ``(T, B, *input_shape)``; ``ys`` int32 ``(T, B)``
with ``-1`` meaning "no loss at this step" (padding rows are -1 throughout).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Task", "metric_counts", "METRICS"]

METRICS = ("trial", "step")


@dataclass(frozen=True)
class Task:
    """A supervised sequence task.

    ``train_batch(seed, step, batch_size) -> (xs, ys)``: deterministic.
    ``eval_batches(batch_size) -> list of (xs, ys)``: the fixed evaluation
    set, the last batch padded with rows labelled -1.
    ``make_model(model_options: dict, seed: int)``: a per-sample flax.nnx
    module (or ``StepModel``) whose output is ``n_out`` logits per step.
    ``metric``: ``"trial"`` scores one prediction per sample, the argmax of
    the logits summed over its labelled steps; ``"step"`` scores every
    labelled step on its own (e.g. the copy task).
    ``options``: the generator's settings, recorded in logs and checkpoints.
    ``model_options``: the model's option schema (a dataclass of
    ``brainscale.models.options.option`` fields) and ``model_defaults`` the
    task's own defaults for it; ``resolve_model`` checks a config's ``model``
    against them. Without a schema the options pass unchecked.
    ``merge_model_options(given) -> dict``, if set, combines a config's
    ``model`` with the defaults first (e.g. merging a nested dict).
    """

    name: str
    n_in: int
    n_out: int
    train_batch: Callable[[int, int, int], tuple]
    eval_batches: Callable[[int], list]
    make_model: Callable[[dict, int], Any]
    metric: str = "trial"
    options: dict = field(default_factory=dict)
    model_defaults: dict = field(default_factory=dict)
    model_options: type | None = None
    merge_model_options: Callable[[dict], dict] | None = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"task {self.name!r}: metric must be one of {METRICS}, "
                             f"got {self.metric!r}")
        if self.model_options is not None:
            self.resolve_model({})          # the task's own defaults fit its schema

    def resolve_model(self, given: dict | None = None) -> dict:
        """Every model option: the schema's defaults, then the task's, then
        ``given`` (a config's ``model``); unknown keys and wrong types are
        errors naming the key."""
        if self.merge_model_options is not None:
            given = self.merge_model_options(dict(given or {}))
        if self.model_options is None:
            return {**self.model_defaults, **dict(given or {})}
        from brainscale.models.options import resolve

        return resolve(self.model_options, given, defaults=self.model_defaults)


def metric_counts(outputs, ys, metric: str = "trial"):
    """``(correct, total)`` for logits ``outputs`` (T, B, C) and labels ``ys``
    (T, B). Rows (or steps) without a label are not counted. For ``"trial"``
    a sample's label is the one at its labelled steps (they must agree)."""
    out = np.asarray(outputs, dtype=np.float64)
    ys = np.asarray(ys)
    mask = ys >= 0
    if metric == "step":
        pred = out.argmax(-1)
        return int(np.sum((pred == ys) & mask)), int(np.sum(mask))
    if metric != "trial":
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    has = mask.any(0)                                          # (B,)
    summed = np.where(mask[..., None], out, 0.0).sum(0)        # (B, C)
    label = np.where(mask, ys, -1).max(0)                      # (B,)
    lo = np.where(mask, ys, np.iinfo(np.int32).max).min(0)
    if np.any(has & (label != lo)):
        raise ValueError("metric 'trial' needs one label per sample; got different labels "
                         "at the labelled steps of one sample (use metric='step')")
    pred = summed.argmax(-1)
    return int(np.sum((pred == label) & has)), int(np.sum(has))
