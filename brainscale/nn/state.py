"""The hidden-state variable type for flax.nnx models.

Weights are ``nnx.Param``; state carried from one time step to the next is a
``HiddenState``. The learner splits a module by these two types: params get
gradients, hidden states get eligibility traces.
"""
import numpy as np
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


def population_shape(size):
    """A population's per-sample shape: ``(size,)`` for an int, else the
    tuple itself (e.g. a conv layer's feature map ``(C, H, W)``)."""
    if np.ndim(size) == 0:
        return (int(size),)
    shape = tuple(int(n) for n in size)
    if not shape or min(shape) < 1:
        raise ValueError(f"a population's shape must hold positive sizes, got {size!r}")
    return shape
