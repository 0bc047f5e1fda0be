"""Synaptic dynamics as flax.nnx modules.

A synapse module keeps per-neuron ``HiddenState`` arrays of shape ``(size,)``
and maps an input of shape ``(size,)`` to an output of the same shape,
elementwise. Used after the weight op (AlignPost: ``size`` = number of
postsynaptic neurons; ``Expon``, ``DualExpon``, ``Alpha``) or before it
(AlignPre: ``size`` = number of presynaptic neurons; ``STD``, ``STP``, or any
of the filters applied to presynaptic spikes). Times are in ms.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx

from brainscale.nn.state import HiddenState, default_float, population_shape
from brainscale.nn.time_constants import decay, positive

__all__ = [
    "Delta", "Expon", "DualExpon", "Alpha", "STD", "STP",
    "expon_update", "dual_expon_update", "alpha_update", "std_update",
    "stp_update",
]


def _init(value, size):
    shape = size if isinstance(size, tuple) else (size,)
    return HiddenState(jnp.broadcast_to(jnp.asarray(value, default_float()), shape))


# --------------------------------------------------------------------------
# Pure per-step updates
# --------------------------------------------------------------------------

def expon_update(g, x, *, decay):
    """``g' = g * decay + x``; returns ``g'``."""
    return g * decay + x


def dual_expon_update(g_rise, g_decay, x, *, decay_rise, decay_decay, norm):
    """``g_r' = g_r decay_r + x``; ``g_d' = g_d decay_d + x``.
    Returns ``(g_r', g_d', norm * (g_d' - g_r'))``."""
    g_rise = g_rise * decay_rise + x
    g_decay = g_decay * decay_decay + x
    return g_rise, g_decay, norm * (g_decay - g_rise)


def alpha_update(h, g, x, *, decay, dt_over_tau):
    """Exact step of ``tau dh/dt = -h``, ``tau dg/dt = e h - g`` then
    ``h += x``: ``g' = decay (g + e dt/tau h)``, ``h' = decay h + x``.
    Returns ``(h', g')``."""
    g = decay * (g + math.e * dt_over_tau * h)
    h = decay * h + x
    return h, g


def std_update(x, spike, *, dt, tau_d, U):
    """Short-term depression. Returns ``(x', out)`` with
    ``x' = x + dt (1 - x) / tau_d - U x s`` and ``out = U x s`` (``x`` before
    the spike)."""
    release = U * x * spike
    return x + dt * (1.0 - x) / tau_d - release, release


def stp_update(u, x, spike, *, dt, U, tau_f, tau_d):
    """Tsodyks-Markram short-term plasticity. Returns ``(u', x', out)``::

        u' = u + dt (U - u) / tau_f + U (1 - u) s
        out = u' x s
        x' = x + dt (1 - x) / tau_d - out
    """
    u_new = u + dt * (U - u) / tau_f + U * (1.0 - u) * spike
    release = u_new * x * spike
    x_new = x + dt * (1.0 - x) / tau_d - release
    return u_new, x_new, release


# --------------------------------------------------------------------------
# nnx modules
# --------------------------------------------------------------------------

class Delta(nnx.Module):
    """Instantaneous synapse: ``out = input``. No hidden state."""

    def __init__(self, size=None):
        self.size = size

    def __call__(self, x):
        return x


class Expon(nnx.Module):
    """Exponential synapse. Hidden state per neuron: conductance ``g``::

        g' = g exp(-dt/tau) + input;   out = g'

    ``size`` is an int or a tuple (``shape``, e.g. a feature map ``(C, H, W)``).
    """

    def __init__(self, size, tau=5.0, dt=1.0, *, g_init=0.0):
        self.shape = population_shape(size)
        self.size = math.prod(self.shape)
        self.tau, self.dt = float(tau), float(dt)
        self.decay = decay(self.dt, self.tau)
        self.g = _init(g_init, self.shape)

    def __call__(self, x):
        g = expon_update(self.g[...], x, decay=self.decay)
        self.g[...] = g
        return g


class DualExpon(nnx.Module):
    """Difference-of-exponentials synapse (rise ``tau_rise`` < decay
    ``tau_decay``). Hidden state per neuron: ``g_rise``, ``g_decay``::

        g_rise'  = g_rise exp(-dt/tau_rise) + input
        g_decay' = g_decay exp(-dt/tau_decay) + input
        out      = norm (g_decay' - g_rise')

    ``norm`` scales the peak of the continuous kernel
    ``exp(-t/tau_decay) - exp(-t/tau_rise)`` to 1.
    """

    def __init__(self, size, tau_rise=1.0, tau_decay=10.0, dt=1.0):
        positive(dt, "dt")
        if not positive(tau_decay, "tau_decay") > positive(tau_rise, "tau_rise"):
            raise ValueError(f"DualExpon needs tau_decay > tau_rise, got {tau_decay}, "
                             f"{tau_rise}")
        self.size = int(size)
        self.tau_rise, self.tau_decay, self.dt = float(tau_rise), float(tau_decay), float(dt)
        self.decay_rise = math.exp(-self.dt / self.tau_rise)
        self.decay_decay = math.exp(-self.dt / self.tau_decay)
        t_peak = (self.tau_rise * self.tau_decay / (self.tau_decay - self.tau_rise)
                  * math.log(self.tau_decay / self.tau_rise))
        self.norm = 1.0 / (math.exp(-t_peak / self.tau_decay) - math.exp(-t_peak / self.tau_rise))
        self.g_rise = _init(0.0, self.size)
        self.g_decay = _init(0.0, self.size)

    def __call__(self, x):
        gr, gd, out = dual_expon_update(
            self.g_rise[...], self.g_decay[...], x, decay_rise=self.decay_rise,
            decay_decay=self.decay_decay, norm=self.norm)
        self.g_rise[...] = gr
        self.g_decay[...] = gd
        return out


class Alpha(nnx.Module):
    """Alpha synapse with kernel ``(t/tau) exp(1 - t/tau)`` (peak 1 at
    ``t = tau``). Hidden state per neuron: ``h`` (input trace) and ``g``
    (output). Exact propagation of ``tau dh/dt = -h``, ``tau dg/dt = e h - g``::

        g' = exp(-dt/tau) (g + e dt/tau h)
        h' = exp(-dt/tau) h + input
        out = g'

    so an input at step t first shows in the output at step t + 1.
    """

    def __init__(self, size, tau=5.0, dt=1.0):
        self.size = int(size)
        self.tau, self.dt = float(tau), float(dt)
        self.decay = decay(self.dt, self.tau)
        self.h = _init(0.0, self.size)
        self.g = _init(0.0, self.size)

    def __call__(self, x):
        h, g = alpha_update(self.h[...], self.g[...], x, decay=self.decay,
                            dt_over_tau=self.dt / self.tau)
        self.h[...] = h
        self.g[...] = g
        return g


class STD(nnx.Module):
    """Short-term depression of presynaptic spikes (AlignPre: one state per
    presynaptic neuron). Hidden state per neuron: available resources ``x``::

        out = U x s                     (x before the spike)
        x'  = x + dt (1 - x) / tau_d - U x s
    """

    def __init__(self, size, tau_d=200.0, U=0.2, dt=1.0, *, x_init=1.0):
        self.size = int(size)
        self.tau_d, self.U, self.dt = positive(tau_d, "tau_d"), float(U), positive(dt, "dt")
        self.x = _init(x_init, self.size)

    def __call__(self, spikes):
        x, out = std_update(self.x[...], spikes, dt=self.dt, tau_d=self.tau_d,
                            U=self.U)
        self.x[...] = x
        return out


class STP(nnx.Module):
    """Tsodyks-Markram short-term plasticity of presynaptic spikes (AlignPre:
    one state per presynaptic neuron). Hidden state per neuron: release
    probability ``u`` and resources ``x``. As in the standard model, ``u``
    jumps first and the release uses the new ``u`` with the old ``x``::

        u'  = u + dt (U - u) / tau_f + U (1 - u) s
        out = u' x s
        x'  = x + dt (1 - x) / tau_d - u' x s
    """

    def __init__(self, size, U=0.15, tau_f=1500.0, tau_d=200.0, dt=1.0, *,
                 u_init=None, x_init=1.0):
        self.size = int(size)
        self.U, self.tau_f = float(U), positive(tau_f, "tau_f")
        self.tau_d, self.dt = positive(tau_d, "tau_d"), positive(dt, "dt")
        self.u = _init(self.U if u_init is None else u_init, self.size)
        self.x = _init(x_init, self.size)

    def __call__(self, spikes):
        u, x, out = stp_update(self.u[...], self.x[...], spikes, dt=self.dt,
                               U=self.U, tau_f=self.tau_f, tau_d=self.tau_d)
        self.u[...] = u
        self.x[...] = x
        return out
