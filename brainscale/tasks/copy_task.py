"""The copy task: remember a sequence of tokens over a lag and recall it.

One trial, for ``n_tokens`` = 10 and a lag of ``lag`` steps (length
``T = 2 * n_tokens + lag``; any ``lag >= 0`` works, e.g. 480 for T = 500)::

    step      0 .. 9        10 .. 9+lag     10+lag .. 19+lag
    input     a_1 .. a_10   0 .. 0          9 .. 9   (the trigger)
    label     -1 .. -1      -1 .. -1        a_1 .. a_10

The tokens ``a_i`` are drawn uniformly from 1..8; every input is one-hot
over the 10 classes 0..9 (the blank 0 is a class of its own, not an all-zero
vector). The label ``-1`` means "no loss at this step", so the loss is the
cross-entropy of the 10 recalled tokens only; a network that has learned
the token alphabet but remembers nothing scores ln(8) ≈ 2.08 on them. The
metric is per-token accuracy (``metric="step"``).
"""
from __future__ import annotations

import math

import numpy as np
from flax import nnx

from brainscale.models.copy_gru import CopyGRU
from brainscale.models.copy_gru import CopyGRUOptions as MODEL_OPTIONS
from brainscale.train.task import Task
from brainscale.tasks.seeding import numpy_rng

__all__ = ["copy_batch", "make_task", "make_model", "CopyGRU", "N_CLASSES", "BLANK",
           "TRIGGER", "TOKENS", "CHANCE_LOSS", "EVAL_SEED", "MODEL_DEFAULTS", "MODEL_OPTIONS"]

N_CLASSES = 10          # one-hot width and number of logits
BLANK = 0               # the lag's filler
TRIGGER = 9             # "recall now"
TOKENS = (1, 8)         # inclusive range of the tokens to copy
CHANCE_LOSS = math.log(TOKENS[1] - TOKENS[0] + 1)
EVAL_SEED = 2 ** 31 - 1  # the fixed evaluation set; training uses [seed, step]
MODEL_DEFAULTS = {"n_hidden": 128}


_rng = numpy_rng


def copy_batch(key_or_seed, batch_size: int, *, lag: int = 10, n_tokens: int = 10,
               return_tokens: bool = False):
    """One batch of copy trials (see the module docstring for the layout).

    ``key_or_seed``: int seed, sequence of ints (e.g. ``[seed, step]``),
    ``np.random.Generator`` or ``jax.random`` key; the same seed gives the
    same batch. Returns ``(xs, ys)``: ``xs`` float32 one-hot of shape
    (T, B, 10), ``ys`` int32 of shape (T, B) with ``T = 2 * n_tokens + lag``;
    with ``return_tokens=True`` also the tokens, int32 (B, n_tokens).
    """
    B, lag, n = int(batch_size), int(lag), int(n_tokens)
    if B < 1 or n < 1 or lag < 0:
        raise ValueError(f"need batch_size >= 1, n_tokens >= 1, lag >= 0; "
                         f"got {batch_size}, {n_tokens}, {lag}")
    tokens = _rng(key_or_seed).integers(TOKENS[0], TOKENS[1] + 1, size=(B, n), dtype=np.int32)
    ids = np.concatenate([tokens.T, np.full((lag, B), BLANK, np.int32),
                          np.full((n, B), TRIGGER, np.int32)])             # (T, B)
    xs = np.eye(N_CLASSES, dtype=np.float32)[ids]
    ys = np.full(ids.shape, -1, np.int32)
    ys[n + lag:] = tokens.T
    return (xs, ys, tokens) if return_tokens else (xs, ys)


def make_model(model_options: dict | None = None, seed: int = 0) -> CopyGRU:
    """The default network (per-sample shapes); ``model_options`` override
    ``MODEL_DEFAULTS`` (``n_hidden``: GRU units)."""
    opts = {**MODEL_DEFAULTS, **(model_options or {})}
    unknown = set(opts) - set(MODEL_DEFAULTS)
    if unknown:
        raise ValueError(f"copy task model: unknown option(s) {sorted(unknown)}; "
                         f"known: {sorted(MODEL_DEFAULTS)}")
    return CopyGRU(int(opts["n_hidden"]), rngs=nnx.Rngs(int(seed)))


def make_task(*, lag: int = 10, n_tokens: int = 10, n_eval: int = 512):
    """The copy task as a ``brainscale.train.Task``.

    ``lag``: blank steps between the tokens and the trigger (T = 2 n_tokens +
    lag); ``n_tokens``: tokens to copy; ``n_eval``: trials in the fixed
    evaluation set (seeded by ``EVAL_SEED``). Model options: ``n_hidden``.
    """
    lag, n_tokens, n_eval = int(lag), int(n_tokens), int(n_eval)
    if n_eval < 1:
        raise ValueError(f"n_eval must be >= 1, got {n_eval}")
    copy_batch(0, 1, lag=lag, n_tokens=n_tokens)          # validates the options

    def train_batch(seed, step, batch_size):
        return copy_batch([seed, step], batch_size, lag=lag, n_tokens=n_tokens)

    def eval_batches(batch_size):
        xs, ys = copy_batch(EVAL_SEED, n_eval, lag=lag, n_tokens=n_tokens)
        B = int(batch_size)
        pad = (-n_eval) % B
        xs = np.concatenate([xs, np.zeros((xs.shape[0], pad, N_CLASSES), np.float32)], 1)
        ys = np.concatenate([ys, np.full((ys.shape[0], pad), -1, np.int32)], 1)
        return [(xs[:, i:i + B], ys[:, i:i + B]) for i in range(0, n_eval + pad, B)]

    return Task(name="copy", n_in=N_CLASSES, n_out=N_CLASSES, train_batch=train_batch,
                eval_batches=eval_batches, make_model=make_model, metric="step",
                options={"lag": lag, "n_tokens": n_tokens, "n_eval": n_eval},
                model_defaults=dict(MODEL_DEFAULTS), model_options=MODEL_OPTIONS)
