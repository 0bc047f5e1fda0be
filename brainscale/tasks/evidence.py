"""Evidence (cue) accumulation, as in e-prop (Bellec et al. 2020), generated.

An agent runs along a corridor and sees cues on its left and right; after a
delay it must say on which side it saw more. Durations in ms, ``dt`` 1 ms
by default; ``C = n_cues * cue_spacing`` (1050), ``T = C + delay + recall``
(2200 with the defaults)::

    time   0 ......................... C .......... C+delay ....... T
           cue k on [k*spacing, k*spacing + cue_duration), k = 0..6
                                         delay            recall (150)
    label  -1 ........................................... -1 | majority side

Input: 4 groups of ``n_per_group`` (10) Poisson channels, in this order:
left [0, 10), right [10, 20), recall [20, 30), noise [30, 40). A channel of
a group fires with probability ``rate * dt / 1000`` per step:

- left / right: ``cue_rate`` (40 Hz) during the cues shown on that side, 0 else;
- recall: ``recall_rate`` (40 Hz) during the last ``recall`` ms, 0 else;
- noise: ``noise_rate`` (10 Hz) at every step.

Each trial draws a preferred side uniformly; every cue is on the preferred
side with probability ``p_side`` (0.7), else on the other side. The label
is the side that got the majority of the cues (0 left, 1 right; with an
even ``n_cues`` a tie goes to the preferred side). Labels are -1 ("no loss")
except in the recall window, where the loss and the trial's prediction are.
"""
from __future__ import annotations

import numpy as np

from brainscale.models.ei_network import MODEL_DEFAULTS, ei_network
from brainscale.models.ei_network import EINetworkOptions as MODEL_OPTIONS
from brainscale.tasks.seeding import numpy_rng

__all__ = ["evidence_batch", "make_task", "EVAL_SEED", "DEFAULTS", "GROUPS"]

EVAL_SEED = 2 ** 31 - 1     # the fixed evaluation set; training uses [seed, step]
GROUPS = ("left", "right", "recall", "noise")   # channel groups, in input order

DEFAULTS = dict(n_cues=7, cue_duration=100.0, cue_spacing=150.0, delay=1000.0, recall=150.0,
                cue_rate=40.0, recall_rate=40.0, noise_rate=10.0, p_side=0.7,
                n_per_group=10, dt=1.0)


_rng = numpy_rng


def _steps(ms: float, dt: float, what: str) -> int:
    n = int(round(float(ms) / dt))
    if n < 0:
        raise ValueError(f"{what} must be >= 0 ms, got {ms}")
    return n


def _layout(n_cues, cue_duration, cue_spacing, delay, recall, dt):
    """Window boundaries in steps."""
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt}")
    if n_cues < 1:
        raise ValueError(f"n_cues must be >= 1, got {n_cues}")
    dur = _steps(cue_duration, dt, "cue_duration")
    spacing = _steps(cue_spacing, dt, "cue_spacing")
    if not 0 < dur <= spacing:
        raise ValueError(f"need 0 < cue_duration <= cue_spacing, got {cue_duration}, "
                         f"{cue_spacing}")
    n_rec = _steps(recall, dt, "recall")
    if n_rec < 1:
        raise ValueError(f"recall must last at least one step, got {recall} ms")
    cue_start = spacing * np.arange(n_cues)
    t_delay = spacing * n_cues
    t_recall = t_delay + _steps(delay, dt, "delay")
    return cue_start, cue_start + dur, t_delay, t_recall, t_recall + n_rec


def evidence_batch(key_or_seed, batch_size: int, *, n_cues=7, cue_duration=100.0,
                   cue_spacing=150.0, delay=1000.0, recall=150.0, cue_rate=40.0,
                   recall_rate=40.0, noise_rate=10.0, p_side=0.7, n_per_group=10, dt=1.0,
                   return_info: bool = False):
    """One batch of evidence-accumulation trials (layout in the module
    docstring; durations in ms, rates in Hz).

    ``key_or_seed``: int, sequence of ints, ``np.random.Generator`` or
    ``jax.random`` key; the same seed gives the same batch. Returns ``(xs,
    ys)``: ``xs`` float32 spikes (T, B, 4 * n_per_group), ``ys`` int32 (T, B).
    With ``return_info`` a third element is a dict: ``sides`` (B, n_cues) int
    (0 left, 1 right), ``n_left``, ``n_right``, ``preferred``, ``label`` (B,),
    ``cue_start``, ``cue_end`` (n_cues,) steps, ``t_delay``, ``t_recall``, ``T``.
    """
    B, n_cues, n = int(batch_size), int(n_cues), int(n_per_group)
    if B < 1 or n < 1:
        raise ValueError(f"need batch_size >= 1 and n_per_group >= 1, got {B}, {n}")
    if not 0.0 <= p_side <= 1.0:
        raise ValueError(f"p_side is a probability, got {p_side}")
    rates = {"cue_rate": cue_rate, "recall_rate": recall_rate, "noise_rate": noise_rate}
    for name, r in rates.items():
        if not 0.0 <= r * dt / 1000.0 <= 1.0:
            raise ValueError(f"{name} {r} Hz is not a spike probability per step of {dt} ms")
    cue_start, cue_end, t_delay, t_recall, T = _layout(n_cues, cue_duration, cue_spacing,
                                                       delay, recall, dt)
    rng = _rng(key_or_seed)
    preferred = rng.integers(0, 2, size=B)
    on_pref = rng.random((B, n_cues)) < p_side
    sides = np.where(on_pref, preferred[:, None], 1 - preferred[:, None]).astype(np.int32)
    n_right = sides.sum(1).astype(np.int32)
    n_left = (n_cues - n_right).astype(np.int32)
    label = np.where(n_right > n_left, 1, np.where(n_left > n_right, 0, preferred))
    label = label.astype(np.int32)

    # spike probability per step, (T, B, 4 groups)
    p = np.zeros((T, B, 4), np.float32)
    for k in range(n_cues):
        side = sides[:, k]
        p[cue_start[k]:cue_end[k], np.arange(B), side] = cue_rate * dt / 1000.0
    p[t_recall:, :, 2] = recall_rate * dt / 1000.0
    p[:, :, 3] = noise_rate * dt / 1000.0
    u = rng.random((T, B, 4, n), dtype=np.float32)
    xs = (u < p[..., None]).astype(np.float32).reshape(T, B, 4 * n)
    ys = np.full((T, B), -1, np.int32)
    ys[t_recall:] = label[None]
    if not return_info:
        return xs, ys
    info = dict(sides=sides, n_left=n_left, n_right=n_right, preferred=preferred.astype(np.int32),
                label=label, cue_start=cue_start, cue_end=cue_end, t_delay=int(t_delay),
                t_recall=int(t_recall), T=int(T))
    return xs, ys, info


def make_task(*, n_cues=7, cue_duration=100.0, cue_spacing=150.0, delay=1000.0, recall=150.0,
              cue_rate=40.0, recall_rate=40.0, noise_rate=10.0, p_side=0.7, n_per_group=10,
              dt=1.0, n_eval: int = 512):
    """Evidence accumulation as a ``brainscale.train.Task`` (metric
    ``"trial"``: the argmax of the logits summed over the recall window).

    The generator options are those of ``evidence_batch`` (same defaults);
    ``n_eval`` trials, drawn with ``EVAL_SEED``, form the evaluation set.
    The model is ``brainscale.models.ei_network.ei_network`` (options
    ``brainscale.models.ei_network.MODEL_DEFAULTS``).
    """
    from brainscale.train.task import Task

    opts = dict(n_cues=int(n_cues), cue_duration=float(cue_duration),
                cue_spacing=float(cue_spacing), delay=float(delay), recall=float(recall),
                cue_rate=float(cue_rate), recall_rate=float(recall_rate),
                noise_rate=float(noise_rate), p_side=float(p_side),
                n_per_group=int(n_per_group), dt=float(dt))
    n_eval = int(n_eval)
    if n_eval < 1:
        raise ValueError(f"n_eval must be >= 1, got {n_eval}")
    evidence_batch(0, 1, **opts)                       # validates the options
    n_in = 4 * opts["n_per_group"]

    def train_batch(seed, step, batch_size):
        return evidence_batch([int(seed), int(step)], batch_size, **opts)

    cache = {}

    def eval_batches(batch_size):
        if "eval" not in cache:
            cache["eval"] = evidence_batch(EVAL_SEED, n_eval, **opts)
        xs, ys = cache["eval"]
        B = int(batch_size)
        pad = (-n_eval) % B
        xs = np.concatenate([xs, np.zeros((xs.shape[0], pad, n_in), np.float32)], 1)
        ys = np.concatenate([ys, np.full((ys.shape[0], pad), -1, np.int32)], 1)
        return [(xs[:, i:i + B], ys[:, i:i + B]) for i in range(0, n_eval + pad, B)]

    def make_model(model_options, seed):
        return ei_network(n_in, 2, seed=int(seed), dt=opts["dt"],
                          **{**MODEL_DEFAULTS, **dict(model_options or {})})

    return Task(name="evidence", n_in=n_in, n_out=2, train_batch=train_batch,
                eval_batches=eval_batches, make_model=make_model, metric="trial",
                options={**opts, "n_eval": n_eval}, model_defaults=dict(MODEL_DEFAULTS),
                model_options=MODEL_OPTIONS)
