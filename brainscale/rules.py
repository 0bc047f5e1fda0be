"""The local plasticity rules by name: ``bs.rules.stdp(a_plus=0.01)``.

Each returns a ``Rule`` (a pure ``init`` / ``update`` pair on the local
signals of one weight op) that ``bs.plasticity`` applies to the weight ops the
compiler finds. Equations and options: ``docs/rules/``.
"""
from transforms.plasticity.engine import LocalSignals, Rule
from transforms.plasticity.rules.decolle import decolle, local_readout
from transforms.plasticity.rules.hebbian import (hard_wta, hebb, multilayer_softhebb, oja,
                                                 softhebb, with_traces)
from transforms.plasticity.rules.hybrid import hp_assoc, hp_local
from transforms.plasticity.rules.sbp import delta, sbp_backward, sbp_output
from transforms.plasticity.rules.stdp import reward_stdp, stdp, triplet_stdp

__all__ = ["LocalSignals", "Rule", "decolle", "delta", "hard_wta", "hebb", "hp_assoc", "hp_local",
           "local_readout", "multilayer_softhebb", "oja", "reward_stdp", "sbp_backward", "sbp_output",
           "softhebb", "stdp", "triplet_stdp", "with_traces"]
