"""The integrate-and-fire neuron (no leak), on a vector or a feature map.

Its population can take any shape: after a ``Conv2d`` its state is the
feature map ``(C, H, W)`` itself, as in sinabs / Speck CNNs (``LIF`` and
``Expon`` take a shape too).
Its state is a ``HiddenState`` like every neuron's, so the online learners
train the weights that drive it.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx

from brainscale.nn.neurons import spike_and_reset
from brainscale.nn.state import HiddenState, default_float, population_shape
from brainscale.nn.surrogate import Sigmoid
from brainscale.nn.time_constants import positive

__all__ = ["IF", "if_update"]


def if_update(v, current, *, gain, v_th=1.0, v_reset=0.0, reset="soft", detach_reset=False,
              spike_fn=Sigmoid()):
    """One integrate-and-fire step. Returns ``(v_new, spike)``::

        v' = v + gain I
        s  = spike_fn((v' - v_th) / (v_th - v_reset))
        v' - (v_th - v_reset) s  (reset='soft')   or   v' (1 - s) + v_reset s  ('hard')

    With ``detach_reset`` the reset uses ``stop_gradient(s)``.
    """
    return spike_and_reset(v + gain * current, v_th=v_th, v_reset=v_reset, reset=reset,
                           detach_reset=detach_reset, spike_fn=spike_fn)


class IF(nnx.Module):
    """Integrate-and-fire population. ``shape`` is an int or a tuple (e.g. a
    conv layer's ``(C, H, W)``); the hidden state ``v``, the input current
    and the spikes have that shape.

    NIR's ``IF``, ``dv/dt = R I``, integrated exactly over a step of ``dt``
    with ``I`` held constant; with the defaults ``dt = R = 1`` a step adds
    its input, as sinabs' ``IAF`` does::

        v' = v + R I dt
        s  = spike_fn((v' - v_th) / (v_th - v_reset))
        v' = v' - (v_th - v_reset) s      (reset='soft', the default, as LIF)
        v' = v' (1 - s) + v_reset s       (reset='hard': NIR's reset)

    ``R`` is a gain per unit of time (NIR's ``r``). ``v`` starts at ``v_init``
    (default ``v_reset``, where NIR's IF starts).
    """

    def __init__(self, shape, *, dt=1.0, R=1.0, v_th=1.0, v_reset=0.0, reset="soft",
                 detach_reset=False, spike_fn=Sigmoid(), v_init=None):
        if reset not in ("soft", "hard"):
            raise ValueError(f"reset must be 'soft' or 'hard', got {reset!r}")
        self.shape = population_shape(shape)
        if min(self.shape) < 1:
            raise ValueError(f"shape must hold positive sizes, got {shape!r}")
        self.size = math.prod(self.shape)
        self.dt, self.R = positive(dt, "dt"), float(R)
        self.v_th, self.v_reset = float(v_th), float(v_reset)
        self.reset, self.detach_reset = reset, bool(detach_reset)
        self.spike_fn = spike_fn
        v_init = self.v_reset if v_init is None else v_init
        self.v = HiddenState(jnp.broadcast_to(jnp.asarray(v_init, default_float()), self.shape))

    def __call__(self, current):
        v, s = if_update(self.v[...], current, gain=self.R * self.dt, v_th=self.v_th,
                         v_reset=self.v_reset, reset=self.reset,
                         detach_reset=self.detach_reset, spike_fn=self.spike_fn)
        self.v[...] = v
        return s
