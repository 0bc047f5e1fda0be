"""Spiking neuron populations as flax.nnx modules.

Each population of ``size`` neurons keeps its per-neuron hidden states as
``HiddenState`` arrays of shape ``(size,)`` and maps an input current of shape
``(size,)`` to spikes (float 0/1) of shape ``(size,)``; ``LIF`` also takes a
tuple ``size`` (e.g. a conv feature map ``(C, H, W)``). All dynamics are
elementwise per neuron. Times are in ms; ``dt`` is the step size. The pure
per-step updates are exposed as module-level functions for plain-JAX use.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from brainscale.nn.state import HiddenState, default_float, population_shape
from brainscale.nn.surrogate import Sigmoid
from brainscale.nn.time_constants import decay, positive

__all__ = [
    "LIF", "ALIF", "GIF", "Izhikevich", "ExpIF", "QIF",
    "lif_update", "refractory_update", "alif_update", "gif_update",
    "izhikevich_update", "expif_update", "qif_update",
]

_EXP_CLIP = 10.0  # largest exponent used by ExpIF's spike-initiation term


def _init(value, size):
    shape = size if isinstance(size, tuple) else (size,)
    return HiddenState(jnp.broadcast_to(jnp.asarray(value, default_float()), shape))


def _leak_factor(dt, tau, integrator):
    if integrator == "exp":
        return decay(dt, tau)
    if integrator == "euler":
        return 1.0 - positive(dt, "dt") / positive(tau, "tau")
    raise ValueError(f"integrator must be 'exp' or 'euler', got {integrator!r}")


def _reset_spike(s, detach):
    return jax.lax.stop_gradient(s) if detach else s


def lif_update(v, current, *, decay, v_th=1.0, v_reset=0.0, v_rest=0.0, R=1.0,
               reset="soft", detach_reset=False, spike_fn=Sigmoid(),
               refractory=None):
    """One LIF step. Returns ``(v_new, spike)``.

    ``v' = v_rest + (v - v_rest) * decay + R * I * (1 - decay)``;
    ``v' = v_reset`` where ``refractory`` (a boolean mask) is true;
    ``s = spike_fn((v' - v_th) / (v_th - v_reset))``;
    soft reset ``v' - (v_th - v_reset) * s`` or hard ``v' (1 - s) + v_reset s``.
    """
    v_new = v_rest + (v - v_rest) * decay + R * current * (1.0 - decay)
    if refractory is not None:
        v_new = jnp.where(refractory, v_reset, v_new)
    return spike_and_reset(v_new, v_th=v_th, v_reset=v_reset, reset=reset,
                           detach_reset=detach_reset, spike_fn=spike_fn)


def spike_and_reset(v_new, *, v_th, v_reset, reset, detach_reset, spike_fn):
    """The spike of an integrated potential and its reset: ``(v, s)`` with
    ``s = spike_fn((v' - v_th) / (v_th - v_reset))`` and
    ``v = v' - (v_th - v_reset) s`` (soft) or ``v' (1 - s) + v_reset s`` (hard);
    ``detach_reset`` resets with ``stop_gradient(s)``."""
    s = spike_fn((v_new - v_th) / (v_th - v_reset))
    sr = _reset_spike(s, detach_reset)
    if reset == "soft":
        return v_new - (v_th - v_reset) * sr, s
    if reset == "hard":
        return v_new * (1.0 - sr) + v_reset * sr, s
    raise ValueError(f"reset must be 'soft' or 'hard', got {reset!r}")


def refractory_update(ref, spike, n_ref):
    """Refractory counter (in steps): ``n_ref`` after a spike, else
    ``max(ref - 1, 0)``."""
    return jnp.where(spike > 0, n_ref, jnp.maximum(ref - 1.0, 0.0))


def alif_update(v, a, current, *, decay, decay_a, v_th=1.0, beta=0.07, R=1.0,
                detach_reset=False, spike_fn=Sigmoid()):
    """One ALIF step (Bellec et al.). Returns ``(v_new, a_new, spike)``.

    ``A = v_th + beta * a``; ``v' = v * decay + R * I * (1 - decay)``;
    ``s = spike_fn((v' - A) / v_th)``; ``v' -= v_th * s``;
    ``a' = a * decay_a + s``.
    """
    thr = v_th + beta * a
    v_new = v * decay + R * current * (1.0 - decay)
    s = spike_fn((v_new - thr) / v_th)
    v_new = v_new - v_th * _reset_spike(s, detach_reset)
    a_new = a * decay_a + s
    return v_new, a_new, s


def gif_update(v, theta, i1, i2, current, *, dt, tau=20.0, R=1.0, v_rest=0.0,
               v_reset=0.0, theta_inf=1.0, theta_reset=1.2, a=0.0, b=0.01,
               k1=0.2, k2=0.02, R1=0.0, R2=1.0, A1=0.0, A2=-0.1,
               detach_reset=False, spike_fn=Sigmoid()):
    """One GIF step (Mihalas & Niebur 2009); equations as in ``GIF``.
    Returns ``(v, theta, i1, i2, spike)``."""
    e = math.exp(-dt / tau)
    i1_new = i1 * math.exp(-k1 * dt)
    i2_new = i2 * math.exp(-k2 * dt)
    v_new = v_rest + (v - v_rest) * e + R * (current + i1 + i2) * (1.0 - e)
    th_new = theta_inf + (theta - theta_inf) * math.exp(-b * dt) + a * dt * (v - v_rest)
    s = spike_fn((v_new - th_new) / (theta_inf - v_reset))
    sr = _reset_spike(s, detach_reset)
    i1_new = i1_new + sr * (R1 * i1_new + A1 - i1_new)
    i2_new = i2_new + sr * (R2 * i2_new + A2 - i2_new)
    v_new = v_new + sr * (v_reset - v_new)
    th_new = th_new + sr * (jnp.maximum(theta_reset, th_new) - th_new)
    return v_new, th_new, i1_new, i2_new, s


def izhikevich_update(v, u, current, *, dt, a=0.02, b=0.2, c=-65.0, d=8.0,
                      v_th=30.0, v_scale=30.0, detach_reset=False,
                      spike_fn=Sigmoid()):
    """One Izhikevich step (forward Euler, mV and ms); equations as in
    ``Izhikevich``. Returns ``(v, u, spike)``."""
    v_new = v + dt * (0.04 * v * v + 5.0 * v + 140.0 - u + current)
    u_new = u + dt * a * (b * v - u)
    s = spike_fn((v_new - v_th) / v_scale)
    sr = _reset_spike(s, detach_reset)
    v_new = v_new + sr * (c - v_new)
    u_new = u_new + d * sr
    return v_new, u_new, s


def expif_update(v, current, *, dt, tau=20.0, R=1.0, v_rest=0.0, v_reset=0.0,
                 v_T=1.0, delta_T=0.2, v_th=2.0, detach_reset=False,
                 spike_fn=Sigmoid()):
    """One exponential integrate-and-fire step (forward Euler); equations as
    in ``ExpIF``. Returns ``(v, spike)``."""
    expo = jnp.exp(jnp.minimum((v - v_T) / delta_T, _EXP_CLIP))
    v_new = v + dt / tau * (-(v - v_rest) + delta_T * expo + R * current)
    s = spike_fn((v_new - v_th) / (v_th - v_reset))
    v_new = v_new + _reset_spike(s, detach_reset) * (v_reset - v_new)
    return v_new, s


def qif_update(v, current, *, dt, tau=20.0, R=1.0, a0=1.0, v_rest=0.0, v_c=1.0,
               v_reset=0.0, v_th=2.0, detach_reset=False, spike_fn=Sigmoid()):
    """One quadratic integrate-and-fire step (forward Euler); equations as in
    ``QIF``. Returns ``(v, spike)``."""
    v_new = v + dt / tau * (a0 * (v - v_rest) * (v - v_c) + R * current)
    s = spike_fn((v_new - v_th) / (v_th - v_reset))
    v_new = v_new + _reset_spike(s, detach_reset) * (v_reset - v_new)
    return v_new, s


class _Params:
    """Stores scalar hyperparameters as plain attributes (static in nnx)."""

    def _set_params(self, **kw):
        self._param_names = tuple(kw)
        for k, val in kw.items():
            setattr(self, k, val)

    def _params(self):
        return {k: getattr(self, k) for k in self._param_names}


class LIF(nnx.Module):
    """Leaky integrate-and-fire population. Hidden state per neuron: ``v``
    (and ``ref``, the refractory counter in steps, only when ``tau_ref > 0``).

    With ``d = exp(-dt/tau)`` (``integrator='exp'``, exact for constant input;
    the default) or ``d = 1 - dt/tau`` (``integrator='euler'``)::

        v' = v_rest + (v - v_rest) d + R I (1 - d)
        v' = v_reset                     where ref > 0 (input ignored)
        s  = spike_fn((v' - v_th) / (v_th - v_reset))
        v' = v' - (v_th - v_reset) s      (reset='soft')
        v' = v' (1 - s) + v_reset s       (reset='hard')
        ref' = n_ref if s else max(ref - 1, 0),   n_ref = tau_ref / dt

    so a spike is followed by ``ceil(tau_ref / dt)`` clamped steps. With
    ``detach_reset`` the reset uses ``stop_gradient(s)``. ``size`` is an int
    or a tuple (``shape``; ``size`` is then the number of neurons).
    """

    def __init__(self, size, *, dt=1.0, tau=20.0, v_th=1.0, v_reset=0.0,
                 v_rest=0.0, R=1.0, tau_ref=0.0, reset="soft",
                 detach_reset=False, integrator="exp", spike_fn=Sigmoid(),
                 v_init=0.0):
        if reset not in ("soft", "hard"):
            raise ValueError(f"reset must be 'soft' or 'hard', got {reset!r}")
        self.shape = population_shape(size)
        self.size = math.prod(self.shape)
        self.dt, self.tau = float(dt), float(tau)
        self.v_th, self.v_reset, self.v_rest = float(v_th), float(v_reset), float(v_rest)
        self.R = float(R)
        self.tau_ref = float(tau_ref)
        self.reset, self.detach_reset = reset, bool(detach_reset)
        self.integrator = integrator
        self.decay = _leak_factor(self.dt, self.tau, integrator)
        self.spike_fn = spike_fn
        self.v = _init(v_init, self.shape)
        if self.tau_ref > 0:
            self.n_ref = self.tau_ref / self.dt
            self.ref = _init(0.0, self.shape)

    def __call__(self, current):
        refractory = self.ref[...] > 0 if self.tau_ref > 0 else None
        v, s = lif_update(
            self.v[...], current, decay=self.decay, v_th=self.v_th,
            v_reset=self.v_reset, v_rest=self.v_rest, R=self.R,
            reset=self.reset, detach_reset=self.detach_reset,
            spike_fn=self.spike_fn, refractory=refractory)
        self.v[...] = v
        if self.tau_ref > 0:
            self.ref[...] = refractory_update(self.ref[...], s, self.n_ref)
        return s


class ALIF(nnx.Module):
    """Adaptive LIF (Bellec et al. 2018, 2020). Hidden state per neuron: ``v``
    and the adaptation variable ``a``.

    With ``d = exp(-dt/tau)`` (or ``1 - dt/tau`` for ``integrator='euler'``)
    and ``rho = exp(-dt/tau_a)``::

        A  = v_th + beta a
        v' = v d + R I (1 - d)
        s  = spike_fn((v' - A) / v_th)
        v' = v' - v_th s                  (soft reset by v_th)
        a' = a rho + s
    """

    def __init__(self, size, *, dt=1.0, tau=20.0, tau_a=200.0, v_th=1.0,
                 beta=0.07, R=1.0, detach_reset=False, integrator="exp",
                 spike_fn=Sigmoid(), v_init=0.0, a_init=0.0):
        self.size = int(size)
        self.dt, self.tau, self.tau_a = float(dt), float(tau), float(tau_a)
        self.v_th, self.beta, self.R = float(v_th), float(beta), float(R)
        self.detach_reset = bool(detach_reset)
        self.integrator = integrator
        self.decay = _leak_factor(self.dt, self.tau, integrator)
        self.decay_a = decay(self.dt, self.tau_a, "tau_a")
        self.spike_fn = spike_fn
        self.v = _init(v_init, self.size)
        self.a = _init(a_init, self.size)

    def __call__(self, current):
        v, a, s = alif_update(
            self.v[...], self.a[...], current, decay=self.decay,
            decay_a=self.decay_a, v_th=self.v_th, beta=self.beta, R=self.R,
            detach_reset=self.detach_reset, spike_fn=self.spike_fn)
        self.v[...] = v
        self.a[...] = a
        return s


class GIF(_Params, nnx.Module):
    """Generalised integrate-and-fire (Mihalas & Niebur 2009), in units where
    the resting potential is 0 and the resting threshold 1. Hidden state per
    neuron: ``v``, threshold ``theta`` and after-spike currents ``i1``, ``i2``.

    Continuous model: ``di_j/dt = -k_j i_j``;
    ``tau dv/dt = -(v - v_rest) + R (I + i1 + i2)``;
    ``dtheta/dt = a (v - v_rest) - b (theta - theta_inf)``; on a spike
    ``i_j <- R_j i_j + A_j``, ``v <- v_reset``, ``theta <- max(theta_reset, theta)``.
    Discretised per step (old state on the right-hand side)::

        i_j' = i_j exp(-k_j dt)
        v'   = v_rest + (v - v_rest) e + R (I + i1 + i2)(1 - e),   e = exp(-dt/tau)
        th'  = theta_inf + (theta - theta_inf) exp(-b dt) + a dt (v - v_rest)
        s    = spike_fn((v' - th') / (theta_inf - v_reset))
        i_j' += s (R_j i_j' + A_j - i_j');  v' += s (v_reset - v');
        th'  += s (max(theta_reset, th') - th')

    Defaults (slow hyperpolarising ``i2``, threshold jump to 1.2) give
    adapting tonic spiking for constant currents of about 1.2 to 3.
    """

    def __init__(self, size, *, dt=1.0, tau=20.0, R=1.0, v_rest=0.0,
                 v_reset=0.0, theta_inf=1.0, theta_reset=1.2, a=0.0, b=0.01,
                 k1=0.2, k2=0.02, R1=0.0, R2=1.0, A1=0.0, A2=-0.1,
                 detach_reset=False, spike_fn=Sigmoid(), v_init=0.0,
                 theta_init=None, i1_init=0.0, i2_init=0.0):
        self.size = int(size)
        self._set_params(
            dt=float(dt), tau=float(tau), R=float(R), v_rest=float(v_rest),
            v_reset=float(v_reset), theta_inf=float(theta_inf),
            theta_reset=float(theta_reset), a=float(a), b=float(b),
            k1=float(k1), k2=float(k2), R1=float(R1), R2=float(R2),
            A1=float(A1), A2=float(A2), detach_reset=bool(detach_reset))
        self.spike_fn = spike_fn
        self.v = _init(v_init, self.size)
        self.theta = _init(theta_inf if theta_init is None else theta_init, self.size)
        self.i1 = _init(i1_init, self.size)
        self.i2 = _init(i2_init, self.size)

    def __call__(self, current):
        v, th, i1, i2, s = gif_update(
            self.v[...], self.theta[...], self.i1[...], self.i2[...], current,
            spike_fn=self.spike_fn, **self._params())
        self.v[...] = v
        self.theta[...] = th
        self.i1[...] = i1
        self.i2[...] = i2
        return s


class Izhikevich(_Params, nnx.Module):
    """Izhikevich (2003) neuron, in mV and ms. Hidden state per neuron: ``v``
    and the recovery variable ``u``. Forward Euler step of ``dt`` ms::

        v' = v + dt (0.04 v^2 + 5 v + 140 - u + I)
        u' = u + dt a (b v - u)
        s  = spike_fn((v' - v_th) / v_scale)        (v_th = 30 mV)
        v' = v' + s (c - v');   u' = u' + d s

    Defaults are regular spiking (a=0.02, b=0.2, c=-65, d=8); ``I`` is about
    5 to 15 for tonic firing.
    """

    def __init__(self, size, *, dt=1.0, a=0.02, b=0.2, c=-65.0, d=8.0,
                 v_th=30.0, v_scale=30.0, detach_reset=False,
                 spike_fn=Sigmoid(), v_init=-65.0, u_init=None):
        self.size = int(size)
        self._set_params(dt=float(dt), a=float(a), b=float(b), c=float(c),
                           d=float(d), v_th=float(v_th), v_scale=float(v_scale),
                           detach_reset=bool(detach_reset))
        self.spike_fn = spike_fn
        self.v = _init(v_init, self.size)
        if u_init is None:
            u_init = float(b) * jnp.asarray(v_init, default_float())
        self.u = _init(u_init, self.size)

    def __call__(self, current):
        v, u, s = izhikevich_update(self.v[...], self.u[...], current,
                                    spike_fn=self.spike_fn, **self._params())
        self.v[...] = v
        self.u[...] = u
        return s


class ExpIF(_Params, nnx.Module):
    """Exponential integrate-and-fire (Fourcaud-Trocme et al. 2003) in
    dimensionless units (rest 0, soft threshold ``v_T`` = 1, cut-off ``v_th``
    = 2). Hidden state per neuron: ``v``. Forward Euler::

        v' = v + dt/tau (-(v - v_rest) + delta_T exp(min((v - v_T)/delta_T, 10)) + R I)
        s  = spike_fn((v' - v_th) / (v_th - v_reset))
        v' = v' + s (v_reset - v')

    The exponent is clipped at 10 to stay finite; with the defaults the clip
    only acts above the cut-off. Rheobase is ``(v_T - v_rest - delta_T) / R`` (0.8).
    """

    def __init__(self, size, *, dt=1.0, tau=20.0, R=1.0, v_rest=0.0,
                 v_reset=0.0, v_T=1.0, delta_T=0.2, v_th=2.0,
                 detach_reset=False, spike_fn=Sigmoid(), v_init=0.0):
        self.size = int(size)
        self._set_params(dt=float(dt), tau=float(tau), R=float(R),
                           v_rest=float(v_rest), v_reset=float(v_reset),
                           v_T=float(v_T), delta_T=float(delta_T),
                           v_th=float(v_th), detach_reset=bool(detach_reset))
        self.spike_fn = spike_fn
        self.v = _init(v_init, self.size)

    def __call__(self, current):
        v, s = expif_update(self.v[...], current, spike_fn=self.spike_fn,
                            **self._params())
        self.v[...] = v
        return s


class QIF(_Params, nnx.Module):
    """Quadratic integrate-and-fire in dimensionless units (rest 0, critical
    voltage ``v_c`` = 1, cut-off ``v_th`` = 2). Hidden state per neuron: ``v``.
    Forward Euler::

        v' = v + dt/tau (a0 (v - v_rest)(v - v_c) + R I)
        s  = spike_fn((v' - v_th) / (v_th - v_reset))
        v' = v' + s (v_reset - v')

    Rheobase is ``a0 (v_c - v_rest)^2 / (4 R)`` (0.25 with the defaults).
    """

    def __init__(self, size, *, dt=1.0, tau=20.0, R=1.0, a0=1.0, v_rest=0.0,
                 v_c=1.0, v_reset=0.0, v_th=2.0, detach_reset=False,
                 spike_fn=Sigmoid(), v_init=0.0):
        self.size = int(size)
        self._set_params(dt=float(dt), tau=float(tau), R=float(R),
                           a0=float(a0), v_rest=float(v_rest), v_c=float(v_c),
                           v_reset=float(v_reset), v_th=float(v_th),
                           detach_reset=bool(detach_reset))
        self.spike_fn = spike_fn
        self.v = _init(v_init, self.size)

    def __call__(self, current):
        v, s = qif_update(self.v[...], current, spike_fn=self.spike_fn,
                          **self._params())
        self.v[...] = v
        return s
