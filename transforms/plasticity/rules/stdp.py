"""Spike-timing-dependent plasticity as local rules (W laid out (I, O)).

Pair-based, with exponential traces of the pre and post spike trains::

    x_t = a_pre x_{t-1} + s_pre_t            a_pre  = exp(-dt / tau_pre)
    y_t = a_post y_{t-1} + s_post_t          a_post = exp(-dt / tau_post)
    dw_t = A+ f+(w) (x_t (x) s_post_t) - A- f-(w) (s_pre_t (x) y_{t-1}')

with ``y_{t-1}' = y_t - s_post_t`` (the post trace before this step's post
spike), so a post spike d >= 0 steps after a pre spike gives
``+A+ a_pre^d`` and one d > 0 steps before gives ``-A- a_post^d``: the
classic pairing window. Bounds: additive f+ = f- = 1 (then clip to
[w_min, w_max]), or multiplicative f+ = w_max - w, f- = w - w_min. Batch
terms are averaged. Kept: one trace per pre and per post neuron and sample.

Triplet STDP (Pfister & Gerstner 2006) adds to each pair term a factor of
a slower trace of the other side's earlier spikes (``triplet_stdp``).

Three-factor (reward-modulated) STDP keeps the pair term in a per-synapse
eligibility trace, ``e_t = a_e e_{t-1} + stdp_t``, and changes the weight
only by ``dw = eta <M e>`` with M the modulator (per sample or scalar):
per-synapse memory B x I x O.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from transforms.plasticity.engine import LocalSignals, Rule


def _decay(dt, tau):
    return math.exp(-dt / tau)


def _pair_term(pre, post_before, sig: LocalSignals, a_plus, a_minus, bounds, w_min, w_max,
               spec="bi,bo->io"):
    """LTP minus LTD with their bound factors; ``spec`` "bi,bo->io" sums the
    batch (the caller divides), "bi,bo->bio" keeps it (for eligibility)."""
    ltp = jnp.einsum(spec, pre, sig.post)
    ltd = jnp.einsum(spec, sig.x, post_before)
    if bounds == "multiplicative":
        return a_plus * (w_max - sig.w) * ltp - a_minus * (sig.w - w_min) * ltd
    return a_plus * ltp - a_minus * ltd


def _traces(state, sig, ap, aq):
    pre, post = state
    pre = ap * pre + sig.x
    post_before = aq * post
    return pre, post_before, post_before + sig.post


def stdp(a_plus: float = 0.01, a_minus: float = 0.012, tau_pre: float = 20.0,
         tau_post: float = 20.0, dt: float = 1.0, bounds: str = "additive",
         w_min: float = -jnp.inf, w_max: float = jnp.inf) -> Rule:
    """Pair-based STDP (see module docstring); ``dw`` keeps W in
    [w_min, w_max] with additive bounds."""
    if bounds not in ("additive", "multiplicative"):
        raise ValueError(f"bounds must be 'additive' or 'multiplicative', got {bounds!r}")
    if bounds == "multiplicative" and not (math.isfinite(w_min) and math.isfinite(w_max)):
        raise ValueError("multiplicative bounds need finite w_min and w_max")
    ap, aq = _decay(dt, tau_pre), _decay(dt, tau_post)

    def init(w, x_shape, post_shape, batch):
        return (jnp.zeros((batch,) + tuple(x_shape), w.dtype),
                jnp.zeros((batch,) + tuple(post_shape), w.dtype))

    def update(state, sig: LocalSignals):
        pre, post_before, post = _traces(state, sig, ap, aq)
        dw = _pair_term(pre, post_before, sig, a_plus, a_minus, bounds, w_min,
                        w_max) / sig.x.shape[0]
        if bounds == "additive":
            dw = jnp.clip(sig.w + dw, w_min, w_max) - sig.w
        return dw, (pre, post)

    return Rule(init, update)


def reward_stdp(eta: float, a_plus: float = 1.0, a_minus: float = 1.0, tau_pre: float = 20.0,
                tau_post: float = 20.0, tau_e: float = 200.0, dt: float = 1.0) -> Rule:
    """Three-factor STDP: the pair term feeds an eligibility trace; the weight
    moves by ``eta * mean_b(M_b e_b)`` with M the step's modulator."""
    ap, aq, ae = _decay(dt, tau_pre), _decay(dt, tau_post), _decay(dt, tau_e)

    def init(w, x_shape, post_shape, batch):
        return (jnp.zeros((batch,) + tuple(x_shape), w.dtype),
                jnp.zeros((batch,) + tuple(post_shape), w.dtype),
                jnp.zeros((batch,) + tuple(w.shape), w.dtype))

    def update(state, sig: LocalSignals):
        pre, post_before, post = _traces(state[:2], sig, ap, aq)
        e = ae * state[2] + _pair_term(pre, post_before, sig, a_plus, a_minus, "additive",
                                       None, None, spec="bi,bo->bio")
        m = jnp.zeros(()) if sig.modulator is None else jnp.asarray(sig.modulator)
        m = jnp.broadcast_to(m, (e.shape[0],)).astype(e.dtype)
        return eta * jnp.einsum("b,bio->io", m, e) / e.shape[0], (pre, post, e)

    return Rule(init, update)


def triplet_stdp(a2_plus: float = 5e-3, a3_plus: float = 6e-3, a2_minus: float = 7e-3,
                 a3_minus: float = 2e-4, tau_plus: float = 16.8, tau_x: float = 101.0,
                 tau_minus: float = 33.7, tau_y: float = 125.0, dt: float = 1.0) -> Rule:
    """Triplet STDP (Pfister & Gerstner 2006, all-to-all; defaults: their
    visual-cortex fit). Pre traces r1 (tau_plus), r2 (tau_x); post traces o1
    (tau_minus), o2 (tau_y); each ``tr = a tr + s``. With ``before`` the
    value of a trace before this step's own spike::

        dw = s_post r1 (A2+ + A3+ o2_before) - s_pre o1_before (A2- + A3- r2_before)

    With A3+ = A3- = 0 it is the pair rule. Kept: four traces per neuron."""
    a = [_decay(dt, t) for t in (tau_plus, tau_x, tau_minus, tau_y)]

    def init(w, x_shape, post_shape, batch):
        z = lambda shape: jnp.zeros((batch,) + tuple(shape), w.dtype)
        return (z(x_shape), z(x_shape), z(post_shape), z(post_shape))

    def update(state, sig: LocalSignals):
        r1, r2, o1, o2 = (ai * tr for ai, tr in zip(a, state))     # decayed: "before"
        r1n, r2n = r1 + sig.x, r2 + sig.x
        o1n, o2n = o1 + sig.post, o2 + sig.post
        ltp = jnp.einsum("bi,bo->io", r1n, sig.post * (a2_plus + a3_plus * o2))
        ltd = jnp.einsum("bi,bo->io", sig.x * (a2_minus + a3_minus * r2), o1)
        return (ltp - ltd) / sig.x.shape[0], (r1n, r2n, o1n, o2n)

    return Rule(init, update)


__all__ = ["stdp", "reward_stdp", "triplet_stdp"]
