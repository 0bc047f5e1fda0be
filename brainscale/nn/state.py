"""The hidden-state variable type for flax.nnx models.

Weights are ``nnx.Param``; state carried from one time step to the next is a
``HiddenState``. The learner splits a module by these two types: params get
gradients, hidden states get eligibility traces.
"""
from flax import nnx


class HiddenState(nnx.Variable):
    """A per-neuron quantity carried across time steps (membrane potential,
    synaptic current, adaptation, ...). Its shape is per sample: the learner
    adds the batch axis."""


def default_float():
    """The default floating dtype (float64 when jax_enable_x64 is on), so that
    models built in a float64 test are float64 throughout."""
    import jax.numpy as jnp
    return jnp.asarray(0.0).dtype
