"""Spike-coded 8x8 digits as a training-run ``Task``.

The stratified split of ``load_digits_split`` is fixed by ``split_seed``.
Training batches are a pure function of ``(seed, step)``: with
``n = steps_per_epoch = n_train // batch_size`` (a short last batch is
dropped), step ``s`` is batch ``s mod n`` of epoch ``e = s // n`` in the order
``np.random.default_rng([seed, e]).permutation(n_train)``, so every epoch
draws each training sample at most once (exactly once when ``batch_size``
divides ``n_train``). The rate code of step ``s`` uses the key
``fold_in(PRNGKey(seed), s)``; the evaluation set (the test split, or its
first ``max_eval`` samples) is encoded once with a fixed key.

Labels: the digit on the last ``ceil(label_fraction * T)`` steps, -1 (no
loss) before; the prediction is the argmax of the logits summed over those
steps (metric ``"trial"``).
"""
from __future__ import annotations

import copy
import functools
import math

import numpy as np

from brainscale.tasks.digits import (latency_encode, load_digits_split, rank_order_encode,
                                     rate_encode)
from brainscale.models.recurrent_snn import RecurrentSNNOptions as MODEL_OPTIONS
from brainscale.train.task import Task

__all__ = ["make_task", "label_sequence", "train_indices", "padded_batches",
           "check_coding_options", "model_options_with_defaults",
           "ENCODINGS", "MODEL_DEFAULTS", "MODEL_OPTIONS", "EVAL_KEY_SEED"]

ENCODINGS = ("rate", "latency", "rank_order")
EVAL_KEY_SEED = 2_147_483_647     # the evaluation set's fixed rate-code key

# Two recurrent LIF layers and a leaky readout (brainscale.models.recurrent_snn.recurrent_snn).
# Hard reset (to v_reset), so the trained network exports to NIR exactly
# (NIR's LIF has no reset by subtraction): the accuracy of both resets is in
# docs/nir.md ("The digits default").
MODEL_DEFAULTS = {
    "hidden": [128, 128],
    "neuron": "lif",
    "neuron_options": {"tau": 10.0, "reset": "hard"},
    "w_in_scale": 8.0,
    "w_rec_scale": 1.0,
    "tau_out": 10.0,
}


def model_options_with_defaults(model_options, defaults=None) -> dict:
    """``defaults`` (``MODEL_DEFAULTS``) overridden by ``model_options``.
    ``neuron_options`` given for the default neuron are merged over its
    defaults, so ``model.neuron_options.tau=20`` keeps ``reset='hard'``; for
    another neuron they replace them."""
    defaults = MODEL_DEFAULTS if defaults is None else defaults
    given = dict(model_options)
    opts = {**copy.deepcopy(defaults), **given}
    if opts["neuron"] == defaults["neuron"] and isinstance(given.get("neuron_options"), dict):
        opts["neuron_options"] = {**defaults["neuron_options"], **given["neuron_options"]}
    return opts


def label_sequence(y, T: int, label_fraction: float) -> np.ndarray:
    """(T, B) int32 labels: -1 on the first steps, ``y`` on the last
    ``ceil(label_fraction * T)`` (at least one) steps."""
    n_lab = min(T, max(1, math.ceil(round(label_fraction * T, 9))))   # 0.07 * 100 -> 7
    ys = np.full((T, len(y)), -1, dtype=np.int32)
    ys[T - n_lab:] = np.asarray(y, dtype=np.int32)[None]
    return ys


def train_indices(seed: int, step: int, batch_size: int, n_train: int) -> np.ndarray:
    """Indices into the training split of the batch of ``step``."""
    n = n_train // batch_size
    if n < 1:
        raise ValueError(f"batch_size {batch_size} exceeds the {n_train} training samples")
    epoch, i = divmod(int(step), n)
    perm = np.random.default_rng([int(seed), epoch]).permutation(n_train)
    return perm[i * batch_size:(i + 1) * batch_size]


def check_coding_options(T, label_fraction=1.0, max_rate=0.0, max_eval=None) -> int:
    """The options every spike-coded image task shares, checked; ``T`` as int."""
    T = int(T)
    if T < 1:
        raise ValueError(f"T must be a positive number of steps, got {T}")
    if not 0.0 < label_fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction}")
    if max_eval is not None and int(max_eval) < 1:
        raise ValueError(f"max_eval must be positive or None, got {max_eval}")
    if not 0.0 <= max_rate <= 1.0:
        raise ValueError(f"max_rate is a probability per step, got {max_rate}")
    return T


def padded_batches(xs, labels, batch_size: int, label_fn) -> list:
    """An encoded evaluation set ``xs`` (T, N, D) in batches of
    ``batch_size``, labels ``label_fn(y) -> (T, b)``; the last batch padded
    with zero rows labelled -1 (no loss, not scored)."""
    T, out = xs.shape[0], []
    for start in range(0, xs.shape[1], batch_size):
        x = xs[:, start:start + batch_size]
        y = label_fn(labels[start:start + batch_size])
        pad = batch_size - x.shape[1]
        if pad:
            x = np.concatenate([x, np.zeros((T, pad) + x.shape[2:], x.dtype)], axis=1)
            y = np.concatenate([y, np.full((T, pad), -1, np.int32)], axis=1)
        out.append((x, y))
    return out


@functools.lru_cache(maxsize=4)
def _split(test_fraction: float, split_seed: int):
    """The split, loaded once per process; read-only, tasks share it."""
    arrays = load_digits_split(test_fraction=test_fraction, seed=split_seed)
    for a in arrays:
        a.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=16)
def _rate_encoder(T: int, max_rate: float):
    import jax

    return jax.jit(lambda images, key: rate_encode(images, T, key, max_rate=max_rate))


def make_task(encoding: str = "rate", T: int = 24, max_rate: float = 1.0,
              label_fraction: float = 1 / 3, test_fraction: float = 0.2, split_seed: int = 0,
              max_eval: int | None = None) -> Task:
    """The digits task.

    encoding: ``"rate"`` (Bernoulli, spike probability ``intensity *
    max_rate`` per step), ``"latency"`` (one spike, brighter earlier) or
    ``"rank_order"`` (one spike per nonzero pixel, spread over the T steps
    by decreasing intensity). ``T``: steps per sample. ``label_fraction``:
    share of the steps, at the end, that carry the label. ``test_fraction``
    and ``split_seed``: the stratified split. ``max_eval``: evaluate on the
    first ``max_eval`` test samples only (None: all of them).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    T = check_coding_options(T, label_fraction, max_rate, max_eval)

    import jax

    x_tr, y_tr, x_te, y_te = _split(float(test_fraction), int(split_seed))
    if max_eval is not None:
        x_te, y_te = x_te[:int(max_eval)], y_te[:int(max_eval)]

    def encode(images, key):
        if encoding == "rate":
            return np.asarray(_rate_encoder(T, float(max_rate))(images, key))
        if encoding == "latency":
            return latency_encode(images, T)
        return rank_order_encode(images, T)

    def train_batch(seed, step, batch_size):
        idx = train_indices(seed, step, batch_size, len(x_tr))
        key = jax.random.fold_in(jax.random.PRNGKey(int(seed)), int(step))
        return encode(x_tr[idx], key), label_sequence(y_tr[idx], T, label_fraction)

    eval_xs = []                           # (T, N_test, 64), encoded on first use

    def eval_batches(batch_size):
        if not eval_xs:
            xs = np.array(encode(x_te, jax.random.PRNGKey(EVAL_KEY_SEED)))
            xs.setflags(write=False)       # batches are views of it
            eval_xs.append(xs)
        return padded_batches(eval_xs[0], y_te, batch_size,
                              lambda y: label_sequence(y, T, label_fraction))

    def make_model(model_options, seed):
        from brainscale.models.recurrent_snn import recurrent_snn

        return recurrent_snn(64, 10, seed=int(seed), **model_options)

    options = {"encoding": encoding, "T": T, "max_rate": float(max_rate),
               "label_fraction": float(label_fraction), "test_fraction": float(test_fraction),
               "split_seed": int(split_seed), "max_eval": None if max_eval is None else int(max_eval)}
    return Task(name="digits", n_in=64, n_out=10, train_batch=train_batch,
                eval_batches=eval_batches, make_model=make_model, metric="trial",
                options=options, model_defaults=copy.deepcopy(MODEL_DEFAULTS),
                merge_model_options=model_options_with_defaults,
                model_options=MODEL_OPTIONS)
