"""Weights quantised to a chip's bit width.

Per weight op (the parameter leaf of each mixing op), symmetric uniform
levels: with ``b`` bits, ``L = 2^(b-1) - 1`` and ``s = max|W| / L``,
``W_q = s * round(W / s)``. With one bit (a binary crossbar whose axons are
duplicated into an excitatory and an inhibitory copy) the weights become
ternary: ``W_q = s * sign(W) * [|W| > s / 2]`` with ``s`` the mean |W| of the
op. Biases and per-neuron scales are neuron parameters and stay as they are.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from transforms.ir.graph import MIXING, Graph


def quantize_array(w, bits: int):
    w = jnp.asarray(w)
    if bits == 1:
        s = jnp.mean(jnp.abs(w))
        return jnp.where(jnp.abs(w) > s / 2, s * jnp.sign(w), 0.0).astype(w.dtype), s
    levels = 2 ** (bits - 1) - 1
    s = jnp.max(jnp.abs(w)) / levels
    s = jnp.where(s > 0, s, 1.0)
    return (s * jnp.round(w / s)).astype(w.dtype), s


def quantize_params(graph: Graph, params: list, bits: int) -> tuple[list, list]:
    """Flat parameter leaves with every mixing op's weight quantised; and per
    op its path, scale and largest absolute error."""
    out, info = list(params), []
    for op in graph.ops:
        if op.kind not in MIXING:
            continue
        q, s = quantize_array(params[op.param], bits)
        out[op.param] = q
        info.append({"path": op.path, "bits": bits, "scale": float(s),
                     "max_abs_error": float(np.max(np.abs(np.asarray(q) - np.asarray(
                         params[op.param]))))})
    return out, info
