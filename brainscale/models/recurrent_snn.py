"""Ready-made networks for the tasks: stacked recurrent spiking layers with a
leaky readout, built from a plain options dict (so configs stay JSON).

    net = recurrent_snn(n_in=64, n_out=10, hidden=[128, 128], neuron="lif")

Per-sample step: ``x (n_in,) -> logits (n_out,)``.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Literal

from flax import nnx

from brainscale.nn.neurons import ALIF, LIF
from brainscale.nn.projections import Recurrent
from brainscale.nn.readout import LeakyReadout
from brainscale.models.options import option

__all__ = ["RecurrentSNN", "RecurrentSNNOptions", "recurrent_snn", "NEURONS"]

NEURONS = {"lif": LIF, "alif": ALIF}


@dataclasses.dataclass(frozen=True)
class RecurrentSNNOptions:
    """The JSON options of ``recurrent_snn`` (a config's ``model`` object)."""

    hidden: list[int] = option([128], "recurrent layer sizes, input side first")
    neuron: Literal["lif", "alif"] = option("lif", "neuron model of every layer")
    neuron_options: dict = option({}, "keyword arguments of the neuron class, e.g. "
                                      '{"tau": 20.0, "reset": "hard"} (LIF) or tau_a, beta (ALIF)')
    w_in_scale: float = option(1.0, "input weights ~ N(0, w_in_scale^2 / fan_in)")
    w_rec_scale: float = option(1.0, "recurrent weights ~ N(0, w_rec_scale^2 / n)")
    tau_out: float = option(10.0, "leaky readout time constant (steps of dt)")


class RecurrentSNN(nnx.Module):
    """``len(hidden)`` recurrent layers (each ``Recurrent`` with its own
    neuron population, all LIF or all ALIF) and a ``LeakyReadout`` over the
    last layer's spikes. ``neuron_options`` go to every neuron constructor
    (e.g. ``{"tau": 20.0, "tau_a": 2000.0}``)."""

    def __init__(self, n_in, n_out, hidden, *, rngs, neuron="lif", neuron_options=None,
                 w_in_scale=1.0, w_rec_scale=1.0, tau_out=10.0, dt=1.0):
        if neuron not in NEURONS:
            raise ValueError(f"neuron must be one of {sorted(NEURONS)}, got {neuron!r}")
        if not (isinstance(hidden, (list, tuple)) and hidden and all(
                isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden)):
            raise ValueError(f"hidden must be a non-empty list of positive layer sizes, got "
                             f"{hidden!r}")
        hidden = [int(h) for h in hidden]
        opts = dict(neuron_options or {})
        cls = NEURONS[neuron]
        known = [p for p in inspect.signature(cls.__init__).parameters
                 if p not in ("self", "size", "dt")]
        if set(opts) - set(known):
            raise ValueError(f"unknown neuron_options {sorted(set(opts) - set(known))} for "
                             f"neuron {neuron!r}; its options are {known}")
        layers, n_prev = [], int(n_in)
        for i, n in enumerate(hidden):
            layers.append(Recurrent(n_prev, n, cls(n, dt=dt, **opts), rngs=rngs,
                                    w_in_scale=w_in_scale, w_rec_scale=w_rec_scale))
            n_prev = n
        self.layers = nnx.List(layers) if hasattr(nnx, "List") else layers
        self.out = LeakyReadout(n_prev, n_out, tau=tau_out, dt=dt, rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.out(x)


def recurrent_snn(n_in, n_out, hidden=(128,), neuron="lif", neuron_options=None,
                  w_in_scale=1.0, w_rec_scale=1.0, tau_out=10.0, dt=1.0, seed=0, **unknown):
    """Build a ``RecurrentSNN`` from JSON-friendly options; an unknown option
    is an error listing the known ones (``neuron_options`` are checked by the
    neuron class)."""
    if unknown:
        known = [p for p in inspect.signature(recurrent_snn).parameters
                 if p not in ("n_in", "n_out", "seed", "unknown")]
        raise ValueError(f"unknown model option(s) {sorted(unknown)}; the options are {known}")
    if neuron_options is not None and not isinstance(neuron_options, dict):
        raise ValueError(f"neuron_options must be an object, got {neuron_options!r}")
    if isinstance(hidden, tuple):
        hidden = list(hidden)
    return RecurrentSNN(n_in, n_out, list(hidden), rngs=nnx.Rngs(int(seed)), neuron=neuron,
                        neuron_options=neuron_options, w_in_scale=w_in_scale,
                        w_rec_scale=w_rec_scale, tau_out=tau_out, dt=dt)
