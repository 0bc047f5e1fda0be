"""Hooks into a training run: ``fit(cfg, callbacks=[...])``.

A callback is any object with some of these methods (the missing ones are
skipped), called in the run's own process after the record is in
``metrics.jsonl``::

    on_step(step, record, state)        # record: {"kind": "train", "loss", "grad_norm", ...}
    on_eval(step, record, state)        # record: {"kind": "eval", "accuracy", "loss", ...}
    on_checkpoint(step, path)           # the checkpoint at ``path`` is complete
    on_end(summary)                     # the run stopped: its "status" is "completed",
                                        # "interrupted" or "error" (then re-raised)

``step`` counts finished training steps. ``state`` is the learner state
(``LearnerState``: params, optimizer state, hidden state, traces). An
exception in a callback stops the run like any other error; the last
checkpoint on disk is kept.
"""
from __future__ import annotations

import numbers

__all__ = ["Callback", "TensorBoard", "call"]


class Callback:
    """A base with every hook doing nothing; override the ones you need."""

    def on_step(self, step: int, record: dict, state) -> None:
        pass

    def on_eval(self, step: int, record: dict, state) -> None:
        pass

    def on_checkpoint(self, step: int, path: str) -> None:
        pass

    def on_end(self, summary: dict) -> None:
        pass


def call(callbacks, hook: str, *args) -> None:
    """Call ``hook`` on every callback that has it."""
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)


class TensorBoard(Callback):
    """Scalars of the run as TensorBoard event files in ``log_dir``, written
    by ``tensorboardX`` (the ``tensorboard`` extra): ``train/loss``,
    ``train/loss_per_label``, ``train/grad_norm``, ``train/step_seconds``
    every ``every`` steps, and ``eval/accuracy``, ``eval/loss`` at each
    evaluation. View with ``tensorboard --logdir <log_dir>``."""

    def __init__(self, log_dir: str, every: int = 1):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError('TensorBoard logging needs tensorboardX: pip install -e '
                              '".[tensorboard]" (or pip install tensorboardX)') from None
        self.log_dir, self.every = log_dir, max(int(every), 1)
        self._writer_cls = SummaryWriter
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:             # opened at the first record, not at construction
            self._writer = self._writer_cls(self.log_dir)
        return self._writer

    def _scalars(self, prefix, step, record, keys):
        for key in keys:
            value = record.get(key)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", float(value), step)

    def on_step(self, step, record, state):
        if step % self.every == 0:
            self._scalars("train", step, {**record, "step_seconds": record.get("seconds")},
                          ("loss", "loss_per_label", "grad_norm", "step_seconds"))

    def on_eval(self, step, record, state):
        self._scalars("eval", step, record, ("accuracy", "loss"))
        self.writer.flush()

    def on_end(self, summary):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
