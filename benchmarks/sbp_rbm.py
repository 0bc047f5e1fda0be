"""SBP alternating with BP on an RBM-style classifier, with training-cost
accounting (Zhang et al., Sci. Adv. 2021, the ANN half).

Network: visible v (V) -> RBM hidden h = sigmoid(v W1 + b_h) (H) ->
softmax classifier p = softmax(h W2 + b2) (C). Every iteration has

- a sleep phase: one step of contrastive divergence on the RBM
  (``dW1 = lr (v^T h - v'^T h') / B``, v' the reconstruction, h' its
  hidden probabilities; the biases alike);
- a wake phase, either BP (the cross-entropy gradient of W2, b2, W1, b_h)
  or SBP: only the output synapses take their local gradient
  ``dW2 = -lr h^T (p - onehot) / B`` (with SBP's lateral spreads) and the
  hidden neurons' input synapses scale by ``T_bp`` (``transforms.plasticity.rules.sbp``),
  so no error is sent back through W2.

``schedule`` says which wake phase each iteration runs ("bp", "sbp",
"none"). Training cost is counted per phase as the floating-point
operations of its compiled XLA program (``cost_analysis``), summed over the
iterations run: an SBP wake phase skips the backward matmuls through W2 and
W1. All functions are pure over a ``RBMParams`` pytree.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from transforms.plasticity.rules.sbp import DEFAULTS, backward_factor, lateral_spread

PHASES = ("sleep", "bp", "sbp", "none")


class RBMParams(NamedTuple):
    W1: jax.Array     # (V, H)
    b_v: jax.Array    # (V,)
    b_h: jax.Array    # (H,)
    W2: jax.Array     # (H, C)
    b2: jax.Array     # (C,)
    norm0: jax.Array  # (H,) initial input-weight norm per hidden neuron (SBP's cap)


def init_params(key, n_visible: int, n_hidden: int, n_classes: int, scale=0.1) -> RBMParams:
    k1, k2 = jax.random.split(key)
    W1 = scale * jax.random.normal(k1, (n_visible, n_hidden))
    return RBMParams(W1, jnp.zeros(n_visible), jnp.zeros(n_hidden),
                     scale * jax.random.normal(k2, (n_hidden, n_classes)),
                     jnp.zeros(n_classes), jnp.linalg.norm(W1, axis=0))


def hidden(p: RBMParams, v):
    return jax.nn.sigmoid(v @ p.W1 + p.b_h)


def logits(p: RBMParams, v):
    return hidden(p, v) @ p.W2 + p.b2


def sleep(p: RBMParams, v, key, lr):
    """One CD-1 step on the RBM (binary hidden sample, mean-field
    reconstruction)."""
    h = hidden(p, v)
    hs = (jax.random.uniform(key, h.shape) < h).astype(v.dtype)
    v1 = jax.nn.sigmoid(hs @ p.W1.T + p.b_v)
    h1 = hidden(p, v1)
    B = v.shape[0]
    return p._replace(W1=p.W1 + lr * (v.T @ h - v1.T @ h1) / B,
                      b_v=p.b_v + lr * jnp.mean(v - v1, 0),
                      b_h=p.b_h + lr * jnp.mean(h - h1, 0))


def loss(p: RBMParams, v, y):
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits(p, v)) * jax.nn.one_hot(
        y, p.W2.shape[1], dtype=v.dtype), -1))


def wake_bp(p: RBMParams, v, y, lr):
    """The cross-entropy gradient step on W2, b2, W1 and b_h."""
    g = jax.grad(loss)(p, v, y)
    return p._replace(W1=p.W1 - lr * g.W1, b_h=p.b_h - lr * g.b_h,
                      W2=p.W2 - lr * g.W2, b2=p.b2 - lr * g.b2)


def wake_sbp(p: RBMParams, v, y, lr, lam_pre=DEFAULTS["lam_pre"],
             lam_post=DEFAULTS["lam_post"], lam_bp=DEFAULTS["lam_bp"], f=DEFAULTS["f"],
             rho=DEFAULTS["rho"], cap=2.0):
    """Local gradient on the output synapses with the lateral spreads; the
    hidden input synapses scale by ``T_bp`` (norm held under ``cap`` times
    the initial one; None: no cap)."""
    h = hidden(p, v)
    err = jax.nn.softmax(h @ p.W2 + p.b2) - jax.nn.one_hot(y, p.W2.shape[1], dtype=v.dtype)
    dW2 = -lr * h.T @ err / v.shape[0]
    t_bp = backward_factor([dW2], lam_bp, f, rho)
    if cap is not None:
        room = cap * p.norm0 / jnp.maximum(jnp.linalg.norm(p.W1, axis=0), 1e-30)
        t_bp = jnp.minimum(t_bp, jnp.maximum(room, 1.0))
    return p._replace(W1=p.W1 * t_bp[None, :], W2=p.W2 + lateral_spread(dW2, lam_pre, lam_post, f),
                      b2=p.b2 - lr * jnp.mean(err, 0))


def phase_fns(lr_sleep=0.05, lr_wake=0.5, sbp_options=None) -> dict:
    """{phase: jitted fn(params, v, y, key) -> params}."""
    opts = dict(sbp_options or {})
    return {"sleep": jax.jit(lambda p, v, y, k: sleep(p, v, k, lr_sleep)),
            "bp": jax.jit(lambda p, v, y, k: wake_bp(p, v, y, lr_wake)),
            "sbp": jax.jit(lambda p, v, y, k: wake_sbp(p, v, y, lr_wake, **opts)),
            "none": jax.jit(lambda p, v, y, k: p)}


def phase_flops(fns: dict, params: RBMParams, v, y) -> dict:
    """{phase: floating-point operations of one call}, as XLA counts them
    for the compiled program on this backend."""
    key = jax.random.PRNGKey(0)
    out = {}
    for name, fn in fns.items():
        cost = fn.lower(params, v, y, key).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        out[name] = float((cost or {}).get("flops", 0.0))
    return out


def schedule(kind: str, iterations: int, every: int = 1) -> list[str]:
    """Wake phases: "bp" every iteration, "sbp" every iteration, "none",
    or "alternate": BP on every ``every``-th iteration and SBP otherwise."""
    if kind in ("bp", "sbp", "none"):
        return [kind] * iterations
    if kind == "alternate":
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return ["bp" if i % every == 0 else "sbp" for i in range(iterations)]
    raise ValueError(f"schedule kind must be bp, sbp, none or alternate, got {kind!r}")


def train(params: RBMParams, batches, wake: list[str], fns: dict, key, sleep_phase=True,
          flops: dict | None = None):
    """Runs ``len(wake)`` iterations over ``batches`` (an iterator of (v, y)).
    Returns the parameters and the operations spent (by phase) if ``flops``
    (from ``phase_flops``) is given."""
    spent = {k: 0.0 for k in PHASES}
    for i, phase in enumerate(wake):
        if phase not in fns:
            raise ValueError(f"iteration {i}: unknown wake phase {phase!r}; one of {PHASES[1:]}")
        v, y = next(batches)
        key, k = jax.random.split(key)
        if sleep_phase:
            params = fns["sleep"](params, v, y, k)
            spent["sleep"] += (flops or {}).get("sleep", 0.0)
        params = fns[phase](params, v, y, k)
        spent[phase] += (flops or {}).get(phase, 0.0)
    return params, spent


def accuracy(params: RBMParams, v, y) -> float:
    return float(jnp.mean(jnp.argmax(logits(params, v), -1) == y))


__all__ = ["RBMParams", "init_params", "hidden", "logits", "sleep", "loss", "wake_bp",
           "wake_sbp", "phase_fns", "phase_flops", "schedule", "train", "accuracy", "PHASES"]
