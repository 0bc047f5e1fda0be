"""BrainScale: online learning for spiking neural networks in JAX.

    learner = brainscale.online(model, brainscale.es_d_rtrl(decay=0.9), optax.adam(1e-3))
"""
from brainscale import losses
from brainscale.learner import Learner, LearnerState, online
from transforms.learning.algorithms import BY_NAME as ALGORITHMS
from transforms.learning.algorithms import bptt, d_rtrl, e_prop, es_d_rtrl, ostl
from brainscale.local_learning import Plasticity, PlasticityState, plasticity
from brainscale.brainstate_model import from_brainstate, to_brainstate
from brainscale.model import StepModel, from_nnx, to_nnx
from brainscale.state import HiddenState
from transforms.errors import CompileError

__version__ = "0.1.0"

__all__ = ["ALGORITHMS", "CompileError", "HiddenState", "Learner", "LearnerState", "bptt",
           "d_rtrl", "e_prop", "es_d_rtrl", "ostl",
           "Plasticity", "PlasticityState", "StepModel", "from_brainstate", "from_nnx", "losses",
           "online", "plasticity", "to_brainstate", "to_nnx"]
