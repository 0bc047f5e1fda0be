"""A 3-layer SNN trained by self-backpropagation (SBP): input -> hidden ->
output, two-phase contrastive plasticity on the output synapses, spread
back to the hidden neurons' input synapses (``transforms.plasticity.rules.sbp``).

Per sample (rates r = spike counts / steps):

1. free phase, ``t_free`` steps, no teacher: rates ``r_h^free``, ``r_o^free``;
2. nudged phase, ``t_nudged`` steps continuing from the free state, with a
   teacher current ``beta (onehot(label) - r_o^free)`` into the output
   neurons: rate ``r_o^nudged``;
3. ``dW_out = eta r_h^free^T (r_o^nudged - r_o^free) / (beta B)`` (at the
   last nudged step), with SBP's lateral spreads; the hidden input synapses
   scale by ``T_bp`` in the same step.

The hidden layer keeps a homeostatic threshold (``HomeostaticLIF``) and
the rules read everything from the compiled graph, so any model with the
same two weight ops and a teacher input trains the same way.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from brainscale.nn.homeostasis import HomeostaticLIF
from brainscale.plasticity import plasticity
from brainscale.nn.neurons import LIF
from transforms.plasticity.engine import LocalSignals, Rule
from transforms.plasticity.rules.sbp import DEFAULTS, sbp_backward, sbp_output

HIDDEN = "params['fc1']['kernel']"
OUTPUT = "params['fc2']['kernel']"


class SBPNet(nnx.Module):
    """``x = concat([input spikes (n_in), teacher current (n_out)])``;
    returns the output spikes. Weights (I, O) without bias."""

    def __init__(self, n_in, n_hidden, n_out, *, rngs, w_scale=6.0, gain=1.0,
                 teacher_gain=2.0, tau=10.0, theta_plus=0.02):
        self.n_in = int(n_in)
        self.fc1 = nnx.Linear(n_in, n_hidden, use_bias=False, rngs=rngs,
                              kernel_init=nnx.initializers.normal(w_scale / n_in ** 0.5))
        self.hidden = HomeostaticLIF(n_hidden, tau=tau, v_th=0.5, theta_plus=theta_plus)
        self.fc2 = nnx.Linear(n_hidden, n_out, use_bias=False, rngs=rngs,
                              kernel_init=nnx.initializers.zeros)
        self.out = LIF(n_out, tau=tau, v_th=0.5)
        self.gain, self.teacher_gain = float(gain), float(teacher_gain)

    def __call__(self, x):
        h = self.hidden(self.fc1(x[:self.n_in]))
        return self.out(self.gain * self.fc2(h) + self.teacher_gain * x[self.n_in:])


def contrastive(eta: float, beta: float) -> Rule:
    """The two-phase contrastive rule on spikes. ``modulator`` is the phase
    of the step: 0 free, 1 nudged, 2 the last nudged step. Free steps count
    the pre and post spikes, nudged steps the post spikes; the last nudged
    step emits ``eta r_pre^T (r_post^nudged - r_post^free) / (beta B)``
    with r the rates per phase (every other step: zero), so an iteration's
    modification arrives at once. Kept: a spike count per pre neuron and two
    per post neuron, per sample."""
    def init(w, x_shape, post_shape, batch):
        z = lambda shape: jnp.zeros((batch,) + tuple(shape), w.dtype)
        return (z(x_shape), z(post_shape), z(post_shape), jnp.zeros((2,), w.dtype))

    def update(state, sig: LocalSignals):
        pre, post_f, post_n, n = state
        phase = jnp.asarray(sig.modulator, sig.w.dtype)
        free, last = (phase == 0).astype(phase.dtype), (phase == 2).astype(phase.dtype)
        pre, post_f = pre + free * sig.x, post_f + free * sig.post
        post_n = post_n + (1.0 - free) * sig.post
        n = n + jnp.stack([free, 1.0 - free])
        r_pre, r_f = pre / jnp.maximum(n[0], 1.0), post_f / jnp.maximum(n[0], 1.0)
        r_n = post_n / jnp.maximum(n[1], 1.0)
        dw = last * eta * r_pre.T @ (r_n - r_f) / (beta * pre.shape[0])
        return dw, (pre, post_f, post_n, n)

    return Rule(init, update)


def sbp_rules(eta=0.3, beta=0.5, cap=2.0, **spread) -> dict:
    """{path: rule}: the contrastive rule with lateral spreads on the output
    synapses, backward scaling on the hidden input synapses."""
    p = {**DEFAULTS, **spread}
    return {OUTPUT: sbp_output(contrastive(eta, beta), p["lam_pre"], p["lam_post"],
                               p["f"]),
            HIDDEN: sbp_backward(p["lam_bp"], p["f"], p["rho"], cap=cap)}


class TwoPhase:
    """Trains ``model`` (inputs ``concat([spikes, teacher])``) with
    ``rules`` (default ``sbp_rules``) in free / nudged phases."""

    def __init__(self, model, n_out, *, beta=0.5, t_nudged=10, rules=None):
        self.n_out, self.beta, self.t_nudged = int(n_out), float(beta), int(t_nudged)
        if t_nudged < 1:
            raise ValueError(f"t_nudged must be >= 1, got {t_nudged}")
        self.net = plasticity(model, rules or sbp_rules(beta=beta))
        self.train = jax.jit(self._train)
        self.predict = jax.jit(self._predict)

    def init(self, rng, spikes):
        """``spikes``: (B, n_in) example input."""
        return self.net.init(rng, self._x(spikes, jnp.zeros((spikes.shape[0], self.n_out))))

    def _x(self, spikes, teacher):
        return jnp.concatenate([spikes, teacher.astype(spikes.dtype)], -1)

    def _free(self, state, xs):
        zeros = jnp.zeros(xs.shape[:2] + (self.n_out,), xs.dtype)
        return self.net._run(self.net._reset(state), self._x(xs, zeros),
                             jnp.zeros(xs.shape[0]))

    def _train(self, state, xs, labels):
        """One batch: ``xs`` (T_free, B, n_in) spikes, ``labels`` (B,). The
        nudged phase replays the last ``t_nudged`` input steps."""
        if xs.shape[0] < self.t_nudged:
            raise ValueError(f"xs has {xs.shape[0]} steps; the nudged phase replays the last "
                             f"t_nudged = {self.t_nudged}")
        state, outs = self._free(state, xs)
        r_free = outs.mean(0)
        teacher = self.beta * (jax.nn.one_hot(labels, self.n_out, dtype=xs.dtype) - r_free)
        xn = xs[-self.t_nudged:]
        xn = self._x(xn, jnp.broadcast_to(teacher, xn.shape[:2] + teacher.shape[-1:]))
        phase = jnp.ones(self.t_nudged).at[-1].set(2.0)
        state, _ = self.net._run(state, xn, phase)
        return self.net._reset(state), r_free

    def _predict(self, state, xs):
        """Free-phase output rates (B, n_out) for ``xs`` (T, B, n_in), any
        B; no weight changes."""
        _, outs = self._free(self.net.for_batch(state, xs.shape[1]), xs)
        return outs.mean(0)


__all__ = ["SBPNet", "contrastive", "sbp_rules", "TwoPhase", "HIDDEN", "OUTPUT"]
