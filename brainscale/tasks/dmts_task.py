"""Delayed match-to-sample (``brainscale.tasks.dmts``) as a training-run ``Task``.

Training batch of step ``s`` for run seed ``r``:
``dmts_batch(fold_in(PRNGKey(r), s), B, ...)``, a pure function of
``(r, s)``. Evaluation trial ``i`` is ``dmts_batch(fold_in(PRNGKey(EVAL_SEED),
i), 1, ...)``, so the evaluation set is the same whatever the batch size it
is cut into; batches are generated when read (a full-length set of 512
trials would hold 0.4 GB of float32 spikes). Two classes (0 non-match, 1
match), labelled in the test window only; metric ``"trial"`` (argmax of the
logits summed over the test window).

The default model (``DMTSNet``) is a recurrent ALIF network with a leaky
readout. The sample is held through the delay by adaptation: a neuron that
fired during the sample keeps a raised threshold ``v_th + beta a``, with
``a`` decaying as ``exp(-t / tau_a)``; with ``tau_a`` (2 s) longer than the
delay, neurons tuned to the sample direction answer a matching test
stimulus more weakly than a non-matching one, and the readout learns to
tell the two apart.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from brainscale.models.dmts_net import N_OUT, DMTSNet
from brainscale.models.dmts_net import DMTSNetOptions as MODEL_OPTIONS
from brainscale.nn.surrogate import Arctan, Gaussian, Sigmoid, SuperSpike, Triangle
from brainscale.tasks.dmts import dmts_batch
from brainscale.train.task import Task

__all__ = ["make_task", "make_model", "DMTSNet", "eval_trials", "trial_windows",
           "MODEL_DEFAULTS", "MODEL_OPTIONS", "EVAL_SEED", "SURROGATES"]

EVAL_SEED = 2 ** 31 - 1       # the fixed evaluation set; training uses fold_in(seed, step)

SURROGATES = {"sigmoid": Sigmoid, "arctan": Arctan, "triangle": Triangle,
              "superspike": SuperSpike, "gaussian": Gaussian}

# One recurrent ALIF layer and a leaky readout; tau_a spans the delay. The
# inputs are sparse (about 2.4 spikes per ms in all during a stimulus, 0.1 in
# the delay): input weights of std 32 / sqrt(n_in) make the neurons fire at
# about 15 Hz during a stimulus and stay silent in the delay.
MODEL_DEFAULTS = {
    "hidden": [200],
    "tau": 20.0,
    "tau_a": 2000.0,
    "beta": 0.5,
    "surrogate": None,
    "w_in_scale": 32.0,
    "w_rec_scale": 1.0,
    "tau_out": 200.0,
    "readout_bias": False,
}


def _steps(ms: float, dt: float) -> int:
    return int(round(float(ms) / float(dt)))


def trial_windows(*, fixation=10, sample=500, delay=1000, test=500, dt=1.0) -> dict:
    """Window starts and the trial length in steps: ``t_sample``,
    ``t_delay``, ``t_test``, ``T`` (the labels are set on ``t_test .. T-1``)."""
    n = [_steps(d, dt) for d in (fixation, sample, delay, test)]
    return {"t_sample": n[0], "t_delay": n[0] + n[1], "t_test": n[0] + n[1] + n[2],
            "T": sum(n)}


def make_model(model_options: dict | None = None, seed: int = 0, *, n_in: int = 100,
               dt: float = 1.0) -> DMTSNet:
    """The default network (per-sample shapes ``(n_in,) -> (2,)`` logits);
    ``model_options`` override ``MODEL_DEFAULTS``. ``hidden``: layer sizes;
    ``tau``, ``tau_a`` (ms), ``beta``: the ALIF neurons; ``surrogate`` is null
    (the neuron's default) or ``{"name": <one of SURROGATES>, **its
    parameters}``, e.g. ``{"name": "sigmoid", "alpha": 2.0}``."""
    opts = {**MODEL_DEFAULTS, **(model_options or {})}
    unknown = set(opts) - set(MODEL_DEFAULTS)
    if unknown:
        raise ValueError(f"dmts model: unknown option(s) {sorted(unknown)}; "
                         f"known: {sorted(MODEL_DEFAULTS)}")
    hidden = [opts["hidden"]] if isinstance(opts["hidden"], int) else list(opts["hidden"])
    if not hidden or min(int(h) for h in hidden) < 1:
        raise ValueError(f"dmts model: hidden must be layer sizes >= 1, got {opts['hidden']}")
    spike_fn = None
    if opts["surrogate"] is not None:
        spec = dict(opts["surrogate"])
        name = spec.pop("name", None)
        if name not in SURROGATES:
            raise ValueError(f"dmts model: surrogate name must be one of {sorted(SURROGATES)}, "
                             f"got {name!r}")
        spike_fn = SURROGATES[name](**spec)
    return DMTSNet(int(n_in), [int(h) for h in hidden], rngs=nnx.Rngs(int(seed)),
                   tau=float(opts["tau"]), tau_a=float(opts["tau_a"]), beta=float(opts["beta"]),
                   spike_fn=spike_fn, w_in_scale=float(opts["w_in_scale"]),
                   w_rec_scale=float(opts["w_rec_scale"]), tau_out=float(opts["tau_out"]),
                   readout_bias=opts["readout_bias"], dt=float(dt))


class _EvalBatches(Sequence):
    """The evaluation set cut into batches of ``batch_size`` trials, each
    generated when read; the last batch is padded with rows of zero input
    labelled -1."""

    def __init__(self, n_eval, batch_size, gen):
        self.n_eval, self.batch_size, self.gen = int(n_eval), int(batch_size), gen
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def __len__(self):
        return -(-self.n_eval // self.batch_size)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        lo = k * self.batch_size
        xs, ys = eval_trials(range(lo, min(lo + self.batch_size, self.n_eval)), self.gen)
        pad = self.batch_size - xs.shape[1]
        if pad:
            xs = np.concatenate([xs, np.zeros((xs.shape[0], pad) + xs.shape[2:], xs.dtype)], 1)
            ys = np.concatenate([ys, np.full((ys.shape[0], pad), -1, ys.dtype)], 1)
        return xs, ys


def eval_trials(indices, gen: dict):
    """Evaluation trials ``indices`` as numpy ``(xs, ys)`` of shapes
    ``(T, len(indices), n_in)`` and ``(T, len(indices))``. Trial ``i`` is
    ``dmts_batch(fold_in(PRNGKey(EVAL_SEED), i), 1, **gen)``: one compiled
    generator serves every batch size."""
    base = jax.random.PRNGKey(EVAL_SEED)
    trials = [dmts_batch(jax.random.fold_in(base, int(i)), 1, **gen) for i in indices]
    return (np.concatenate([np.asarray(x) for x, _ in trials], axis=1),
            np.concatenate([np.asarray(y) for _, y in trials], axis=1))


def make_task(delay: float = 1000, fixation: float = 10, sample: float = 500,
              test: float = 500, dt: float = 1.0, n_in: int = 100, p_match: float = 0.5,
              n_eval: int = 512) -> Task:
    """The DMTS task.

    Durations in ms (``fixation`` 10, ``sample`` 500, ``delay`` 1000,
    ``test`` 500 by default) and the step ``dt`` in ms give
    ``T = (fixation + sample + delay + test) / dt`` steps per trial (2010 by
    default); ``n_in`` direction-tuned Poisson inputs; a trial is a match
    with probability ``p_match``; ``n_eval`` trials in the fixed evaluation
    set. Model options: ``brainscale train --task dmts --show-options``.
    """
    if not float(dt) > 0:
        raise ValueError(f"dt must be positive, got {dt}")
    for name, v in (("fixation", fixation), ("sample", sample), ("delay", delay)):
        if not float(v) >= 0:
            raise ValueError(f"{name} must be a duration >= 0 ms, got {v}")
    if _steps(test, dt) < 1:
        raise ValueError(f"test must last at least one step (dt = {dt} ms), got {test}")
    if int(n_in) < 1 or int(n_eval) < 1:
        raise ValueError(f"n_in and n_eval must be >= 1, got {n_in} and {n_eval}")
    if not 0.0 <= float(p_match) <= 1.0:
        raise ValueError(f"p_match is a probability, got {p_match}")
    options = {"delay": float(delay), "fixation": float(fixation), "sample": float(sample),
               "test": float(test), "dt": float(dt), "n_in": int(n_in),
               "p_match": float(p_match), "n_eval": int(n_eval)}
    gen = {k: v for k, v in options.items() if k != "n_eval"}

    def train_batch(seed, step, batch_size):
        key = jax.random.fold_in(jax.random.PRNGKey(int(seed)), int(step))
        xs, ys = dmts_batch(key, int(batch_size), **gen)
        return np.asarray(xs), np.asarray(ys)

    def eval_batches(batch_size):
        return _EvalBatches(options["n_eval"], batch_size, gen)

    def model(model_options, seed):
        return make_model(model_options, seed, n_in=options["n_in"], dt=options["dt"])

    return Task(name="dmts", n_in=options["n_in"], n_out=N_OUT, train_batch=train_batch,
                eval_batches=eval_batches, make_model=model, metric="trial",
                options=options, model_defaults=dict(MODEL_DEFAULTS),
                model_options=MODEL_OPTIONS)
