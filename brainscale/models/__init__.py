"""Ready networks built from ``brainscale.nn``: the stacked recurrent SNN the
tasks train by default, the E-I network, the DMTS and copy-task networks and
the SBP network.

    net = bs.models.recurrent_snn(n_in=64, n_out=10, hidden=[128], neuron="lif")
"""
from brainscale.models.copy_gru import CopyGRU
from brainscale.models.dmts_net import DMTSNet
from brainscale.models.ei_network import EINetwork, ei_network
from brainscale.models.recurrent_snn import RecurrentSNN, recurrent_snn
from brainscale.models.sbp_snn import SBPNet

__all__ = ["CopyGRU", "DMTSNet", "EINetwork", "RecurrentSNN", "SBPNet", "ei_network",
           "recurrent_snn"]
