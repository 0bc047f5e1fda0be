"""Building blocks for spiking networks, as flax.nnx modules whose hidden
states are ``HiddenState`` variables: neurons, synapses, projections,
readouts, RNN cells, surrogate spike functions, homeostasis, the HP synapse,
the DECOLLE layer, and the parts of spiking CNNs (``Conv2d``, ``SumPool2d``,
``AvgPool2d``, ``Flatten``, the ``IF`` neuron on a feature map; one sample
is channels first, ``(C, H, W)``).

    lif = bs.nn.LIF(128, tau=20.0, spike_fn=bs.nn.Arctan(alpha=2.0))
    layer = bs.nn.Recurrent(64, 128, lif, rngs=nnx.Rngs(0))
    conv = bs.nn.AlignPost(bs.nn.Conv2d(2, 8, 3, padding=1, rngs=nnx.Rngs(0)), None,
                           bs.nn.IF((8, 16, 16), reset="hard"))
"""
from brainscale.nn.conv import Conv2d
from brainscale.nn.decolle_layer import DecolleLayer
from brainscale.nn.homeostasis import HomeostaticLIF
from brainscale.nn.hp_synapse import HPLinear
from brainscale.nn.integrate_fire import IF
from brainscale.nn.neurons import ALIF, GIF, LIF, QIF, ExpIF, Izhikevich
from brainscale.nn.projections import AlignPost, AlignPre, Linear, Recurrent, SparseLinear
from brainscale.nn.pooling import AvgPool2d, Flatten, SumPool2d
from brainscale.nn.readout import LeakyReadout, LinearReadout
from brainscale.nn.rnn import GRU, LSTM, VanillaRNN
from brainscale.nn.state import HiddenState
from brainscale.nn.surrogate import Arctan, Gaussian, Sigmoid, SuperSpike, Surrogate, Triangle
from brainscale.nn.synapses import STD, STP, Alpha, Delta, DualExpon, Expon

__all__ = ["ALIF", "GIF", "LIF", "IF", "QIF", "ExpIF", "Izhikevich",
           "Delta", "Expon", "DualExpon", "Alpha", "STD", "STP",
           "Linear", "SparseLinear", "AlignPost", "AlignPre", "Recurrent",
           "Conv2d", "SumPool2d", "AvgPool2d", "Flatten",
           "LeakyReadout", "LinearReadout", "GRU", "LSTM", "VanillaRNN",
           "Surrogate", "Sigmoid", "Arctan", "Triangle", "SuperSpike", "Gaussian",
           "HomeostaticLIF", "HPLinear", "DecolleLayer", "HiddenState"]
