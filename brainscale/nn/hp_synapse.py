"""The hybrid-plasticity (HP) synapse: ``y = x @ W + x @ A`` with
``A = alpha H``, the weight ``w_GP + alpha w_LP`` split into a globally
trained part ``W`` and a locally plastic part (Wu et al., Nat. Commun.
2022).

Written as two weight ops on the same input, so the compiler sees ``W`` as
an ordinary weight (any gradient learner trains it) and ``A`` as one a local
rule drives (``transforms.plasticity.rules.hybrid.hp_local`` under the path
``params[...]['A']``; the rule keeps H and alpha). Usable as the ``comm``
of ``AlignPost`` / ``AlignPre`` or on its own in front of a neuron.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from brainscale.nn.state import default_float


class HPLinear(nnx.Module):
    def __init__(self, n_in, n_out, *, rngs, scale=1.0):
        f = default_float()
        self.n_in, self.n_out = int(n_in), int(n_out)
        std = scale / jnp.sqrt(float(n_in))
        self.W = nnx.Param(std * jax.random.normal(rngs.params(), (n_in, n_out), f))
        self.A = nnx.Param(jnp.zeros((n_in, n_out), f))

    def __call__(self, x):
        return x @ self.W[...] + x @ self.A[...]


__all__ = ["HPLinear"]
