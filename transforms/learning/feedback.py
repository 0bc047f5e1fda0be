"""Feedback matrices for e-prop's learning signal.

e-prop (Bellec et al. 2020) is D-RTRL's eligibility trace with a learning
signal broadcast from the output error, L_t = B (pi_t - pi*_t): with
B = W_out^T (symmetric e-prop) it is exactly D-RTRL's one-step learning
signal, so symmetric e-prop IS ``d_rtrl``; random e-prop replaces W_out by
a fixed random matrix of the same shape in the backward pass only. The
readout ops are the dense ops whose output reaches the step's output
without passing a neuron: output-only ops and the ops feeding a linear
leaky readout (``readout_paths``).
"""
from __future__ import annotations

import math

import jax

from transforms.errors import CompileError
from transforms.ir.graph import DENSE, Graph
from transforms.learning.readout_paths import readout_paths


FEEDBACK_STREAM = 0x65_70_72_6F   # "epro": folded into the seed


def readout_ops(graph: Graph) -> list[int]:
    """Output-only dense ops and the ops feeding a leaky readout, found on
    the graph itself (whether or not the learner carries readout paths)."""
    idx = [op.index for op in graph.ops
           if not op.groups and op.kind == DENSE and op.x_var is not None]
    idx += [p.readout_op for p in graph.readout_paths or readout_paths(graph)]
    return sorted(set(idx))


def random_feedback(graph: Graph, seed: int = 0) -> dict:
    """{op index: B}, B ~ N(0, 1 / fan_in) with the op's W_eff shape, fixed
    by ``seed`` (on a key stream models do not use). A step with no readout op to replace is an error: random
    feedback would silently be symmetric."""
    ops = readout_ops(graph)
    if not ops:
        raise CompileError(
            "e_prop with feedback='random' found no readout to draw a feedback matrix for: "
            "no dense op whose output reaches the step's output without passing a neuron, "
            "and no dense op feeding a linear leaky readout",
            hint="read the output through a dense layer (e.g. nnx.Linear) or a leaky "
                 "readout o = k o + W s, or use feedback='symmetric' (D-RTRL)")
    out = {}
    # a stream of its own: PRNGKey(seed) split as a model's init splits it
    # would draw B equal to (a multiple of) a W_out drawn from the same key
    key = jax.random.fold_in(jax.random.PRNGKey(seed), FEEDBACK_STREAM)
    for k in ops:
        op = graph.ops[k]
        key, sub = jax.random.split(key)
        fan_in = math.prod(op.x_shape)
        out[k] = jax.random.normal(sub, op.weff_shape, op.weff_dtype) / math.sqrt(fan_in)
    return out


__all__ = ["readout_ops", "random_feedback"]
