"""The delayed match-to-sample network: recurrent ALIF layers whose
adaptation holds the sample through the delay, and a leaky readout.

Per-sample step: ``x (n_in,) -> logits (2,)`` (non-match, match).
"""
from __future__ import annotations

import dataclasses

from flax import nnx

from brainscale.nn.neurons import ALIF
from brainscale.nn.projections import Recurrent
from brainscale.models.options import option
from brainscale.nn.readout import LeakyReadout

__all__ = ["DMTSNet", "DMTSNetOptions", "N_OUT"]

N_OUT = 2                     # non-match, match


@dataclasses.dataclass(frozen=True)
class DMTSNetOptions:
    """The JSON options of the DMTS task's network (a config's ``model``)."""

    hidden: list[int] = option([200], "recurrent ALIF layer sizes")
    tau: float = option(20.0, "membrane time constant (ms)")
    tau_a: float = option(2000.0, "adaptation time constant (ms); longer than the delay")
    beta: float = option(0.5, "adaptation strength: threshold v_th + beta a")
    surrogate: dict | None = option(None, 'null (the neuron\'s own) or {"name": one of '
                                          'sigmoid, arctan, triangle, superspike, gaussian, '
                                          '**its parameters}')
    w_in_scale: float = option(32.0, "input weights ~ N(0, w_in_scale^2 / n_in)")
    w_rec_scale: float = option(1.0, "recurrent weights ~ N(0, w_rec_scale^2 / n)")
    tau_out: float = option(200.0, "leaky readout time constant (ms)")
    readout_bias: bool = option(False, "a bias on the readout")


class DMTSNet(nnx.Module):
    """Stacked recurrent ALIF layers (``brainscale.nn.projections.Recurrent``)
    and a ``LeakyReadout`` ``r' = r exp(-dt/tau_out) + s @ W (+ b)`` over the
    last layer's spikes. A long ``tau_out`` (200 ms) averages the
    Poisson-driven test-window spikes before they are scored at every step."""

    def __init__(self, n_in, hidden, *, rngs, tau=20.0, tau_a=2000.0, beta=0.5,
                 spike_fn=None, w_in_scale=32.0, w_rec_scale=1.0, tau_out=200.0,
                 readout_bias=False, dt=1.0):
        kw = {} if spike_fn is None else {"spike_fn": spike_fn}
        layers, n_prev = [], int(n_in)
        for n in hidden:
            neuron = ALIF(n, dt=dt, tau=tau, tau_a=tau_a, beta=beta, **kw)
            layers.append(Recurrent(n_prev, n, neuron, rngs=rngs, w_in_scale=w_in_scale,
                                    w_rec_scale=w_rec_scale))
            n_prev = n
        self.layers = nnx.List(layers) if hasattr(nnx, "List") else layers
        self.out = LeakyReadout(n_prev, N_OUT, tau=tau_out, dt=dt, rngs=rngs,
                                use_bias=bool(readout_bias))

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.out(x)
