"""Delayed match-to-sample (DMTS), generated, no download.

Trial structure (durations in ms, dt 1 ms by default): fixation 10, sample
500, delay ``delay`` (1000 by default), test 500. ``n_in`` (100) Poisson
input channels with preferred directions evenly spaced on the circle fire at

    rate(θ) = 100 Hz · exp(3 cos(θ − θ_pref)) / e³  +  1 Hz background

while a direction θ is shown (sample and test windows) and at the 1 Hz
background otherwise. The sample direction is one of 8; with probability 0.5
the test direction equals it (match, label 1), otherwise it is one of the
other 7 (non-match, label 0). The loss applies only in the test window:
labels are -1 ("no loss at this step") elsewhere.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["dmts_batch", "dmts_rates", "N_DIRECTIONS", "PEAK_RATE_HZ", "BACKGROUND_HZ", "KAPPA"]

N_DIRECTIONS = 8
PEAK_RATE_HZ = 100.0
BACKGROUND_HZ = 1.0
KAPPA = 3.0


def _steps(duration_ms: float, dt: float) -> int:
    n = int(round(duration_ms / dt))
    if n < 0:
        raise ValueError(f"negative duration {duration_ms}")
    return n


def _key(key_or_seed):
    import jax

    if isinstance(key_or_seed, (int, np.integer)):
        return jax.random.PRNGKey(int(key_or_seed))
    return key_or_seed


def tuning_rate(theta, theta_pref):
    """Direction-tuned rate in Hz (without the background)."""
    import jax.numpy as jnp

    return PEAK_RATE_HZ * jnp.exp(KAPPA * jnp.cos(theta - theta_pref)) / math.exp(KAPPA)


def dmts_rates(sample_dir, test_dir, *, fixation=10, sample=500, delay=1000,
               test=500, dt=1.0, n_in=100):
    """Firing rates in Hz, shape (T, B, n_in), for given direction indices
    ``sample_dir`` and ``test_dir`` (int arrays of shape (B,), values 0..7)."""
    import jax.numpy as jnp

    n_fix, n_s, n_d, n_t = (_steps(d, dt) for d in (fixation, sample, delay, test))
    theta_pref = 2 * jnp.pi * jnp.arange(n_in) / n_in                       # (n_in,)
    th_s = 2 * jnp.pi * jnp.asarray(sample_dir) / N_DIRECTIONS              # (B,)
    th_t = 2 * jnp.pi * jnp.asarray(test_dir) / N_DIRECTIONS
    B = th_s.shape[0]
    r_s = tuning_rate(th_s[:, None], theta_pref[None]) + BACKGROUND_HZ      # (B, n_in)
    r_t = tuning_rate(th_t[:, None], theta_pref[None]) + BACKGROUND_HZ
    bg = jnp.full((B, n_in), BACKGROUND_HZ, dtype=jnp.float32)
    parts = [
        jnp.broadcast_to(bg, (n_fix, B, n_in)),
        jnp.broadcast_to(r_s, (n_s, B, n_in)),
        jnp.broadcast_to(bg, (n_d, B, n_in)),
        jnp.broadcast_to(r_t, (n_t, B, n_in)),
    ]
    return jnp.concatenate(parts, axis=0).astype(jnp.float32)


def dmts_batch(key_or_seed, batch_size: int, *, fixation=10, sample=500,
               delay=1000, test=500, dt=1.0, n_in=100, p_match=0.5,
               return_info: bool = False):
    """One batch of DMTS trials.

    ``key_or_seed``: a ``jax.random`` key or an int seed (same seed → same
    batch). Durations are in ms; ``dt`` in ms. Returns ``(xs, labels)``:
    ``xs`` float32 spikes of shape (T, B, n_in); ``labels`` int32 of shape
    (T, B), -1 outside the test window and 1 (match) / 0 (non-match) inside.
    With ``return_info=True`` a third element is a dict with ``sample_dir``,
    ``test_dir`` (direction indices 0..7), ``match`` (B,) and the window
    boundaries in steps (``t_sample``, ``t_delay``, ``t_test``, ``T``).
    """
    key = _key(key_or_seed)
    steps = tuple(_steps(d, dt) for d in (fixation, sample, delay, test))
    xs, labels, sample_dir, test_dir, match = _dmts_jit(
        key, int(batch_size), steps, float(dt), int(n_in), float(p_match))
    if return_info:
        n_fix, n_s, n_d, n_t = steps
        info = dict(sample_dir=sample_dir, test_dir=test_dir, match=match,
                    t_sample=n_fix, t_delay=n_fix + n_s, t_test=n_fix + n_s + n_d,
                    T=sum(steps))
        return xs, labels, info
    return xs, labels


def _dmts_impl(key, B, steps, dt, n_in, p_match):
    import jax
    import jax.numpy as jnp

    n_fix, n_s, n_d, n_t = steps
    k_dir, k_match, k_other, k_spk = jax.random.split(key, 4)
    sample_dir = jax.random.randint(k_dir, (B,), 0, N_DIRECTIONS)
    match = jax.random.bernoulli(k_match, p_match, (B,))
    # a non-match test direction: a uniform nonzero offset from the sample
    offset = jax.random.randint(k_other, (B,), 1, N_DIRECTIONS)
    test_dir = jnp.where(match, sample_dir, (sample_dir + offset) % N_DIRECTIONS)

    # durations given in steps here: pass dt=1 so _steps keeps them
    rates = dmts_rates(sample_dir, test_dir, fixation=n_fix, sample=n_s,
                       delay=n_d, test=n_t, dt=1.0, n_in=n_in)
    p = jnp.clip(rates * (dt / 1000.0), 0.0, 1.0)
    xs = (jax.random.uniform(k_spk, p.shape, dtype=jnp.float32) < p).astype(jnp.float32)

    T = n_fix + n_s + n_d + n_t
    in_test = (jnp.arange(T) >= n_fix + n_s + n_d)[:, None]
    labels = jnp.where(in_test, match.astype(jnp.int32)[None, :], -1).astype(jnp.int32)
    return xs, labels, sample_dir, test_dir, match.astype(jnp.int32)


_DMTS_JIT = None


def _dmts_jit(key, B, steps, dt, n_in, p_match):
    global _DMTS_JIT
    if _DMTS_JIT is None:
        import jax

        _DMTS_JIT = jax.jit(_dmts_impl, static_argnums=(1, 2, 3, 4, 5))
    return _DMTS_JIT(key, B, steps, dt, n_in, p_match)
