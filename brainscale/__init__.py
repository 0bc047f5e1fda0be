"""BrainScale: online learning for spiking neural networks in JAX.

    learner = brainscale.online(model, brainscale.es_d_rtrl(decay=0.9), optax.adam(1e-3))

Subpackages: ``nn`` (neurons, synapses, projections, readouts), ``models``
(ready networks), ``rules`` (local plasticity rules), ``interop`` (brainpy /
brainstate, NIR), ``datasets``, ``tasks``, ``train`` (runs, checkpoints).
"""
from brainscale import interop, losses, models, nn, rules
from brainscale.interop.brainstate_adapter import from_brainstate, to_brainstate
from brainscale.learner import Learner, LearnerState, online
from brainscale.model import StepModel, from_nnx, to_nnx
from brainscale.nn.state import HiddenState
from brainscale.plasticity import Plasticity, PlasticityState, plasticity
from transforms.errors import CompileError
from transforms.learning.algorithms import BY_NAME as ALGORITHMS
from transforms.learning.algorithms import (bptt, d_rtrl, e_prop, es_d_rtrl, low_rank_d_rtrl,
                                           ostl, tbptt)

__version__ = "0.1.0"

__all__ = ["ALGORITHMS", "CompileError", "HiddenState", "Learner", "LearnerState", "bptt",
           "d_rtrl", "e_prop", "es_d_rtrl", "low_rank_d_rtrl", "ostl", "tbptt", "interop",
           "models", "nn", "rules", "Plasticity", "PlasticityState", "StepModel",
           "from_brainstate", "from_nnx", "losses", "online", "plasticity", "to_brainstate",
           "to_nnx"]
