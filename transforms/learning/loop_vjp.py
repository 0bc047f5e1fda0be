"""Reverse mode through a ``while_loop`` that acts within each neuron.

Reverse mode cannot differentiate a ``lax.while_loop`` (its trip count is
only known at run time). When the loop acts within each neuron (an adaptive
ODE integrator of one neuron's states), its Jacobian in each input is
diagonal over neurons, so forward mode recovers it whole: one JVP per float
input, with tangent one everywhere, gives d_oi = dout_o/din_i per neuron, and

    cot_i = sum_o d_oi * cot_o          (summed over neurons for a shared input)

is the exact VJP (the analysis checks that every float operand is of the one
neuron shape or shared by all neurons: a scalar or a size-one array). The learners' one-step learning signal runs
through this rule; their trace Jacobians are forward mode already.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from transforms.ir.trace import bind_eqn


def _is_float(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.inexact)


def _zero_cotangent(a):
    if _is_float(a):
        return jnp.zeros_like(a)
    return np.zeros(jnp.shape(a), jax.dtypes.float0)


def forward_mode_vjp(read, eqn):
    """``evaluate`` replacement for a within-neuron loop equation."""
    args = [read(v) for v in eqn.invars]

    @jax.custom_vjp
    def loop(*a):
        return bind_eqn(eqn, list(a))

    def fwd(*a):
        return loop(*a), a

    def bwd(a, cots):
        outs_like = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.outvars]
        grads = []
        for i, ai in enumerate(a):
            if not _is_float(ai):
                grads.append(_zero_cotangent(ai))
                continue
            tangents = [jnp.ones_like(x) if k == i else _zero_cotangent(x)
                        for k, x in enumerate(a)]
            _, d = jax.jvp(lambda *x: bind_eqn(eqn, list(x)), tuple(a), tuple(tangents))
            g = jnp.zeros_like(ai)
            for d_o, c_o, like in zip(d, cots, outs_like):
                if not jnp.issubdtype(like.dtype, jnp.inexact):
                    continue        # an integer output carries no cotangent
                if jnp.size(ai) == 1:
                    g = g + jnp.sum(d_o * c_o).reshape(jnp.shape(ai))
                elif jnp.shape(c_o) == jnp.shape(ai):
                    g = g + (d_o * c_o).astype(g.dtype)
                # else a scalar output (a clock) does not depend on one neuron's input
            grads.append(g.astype(ai.dtype))
        return tuple(grads)

    loop.defvjp(fwd, bwd)
    # integer / boolean results (flags, counters) leave with no tangent, so
    # primitives downstream of them need no differentiation rule
    return [o if _is_float(o) else jax.lax.stop_gradient(o) for o in loop(*args)]
