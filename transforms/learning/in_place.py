"""Ordering that lets XLA update the traces in place.

Inside a loop, a trace read by two computations, one of which produces its
new value, is copied by XLA unless the other read provably comes first: a
full extra read and write of O(B N^2) memory per step for D-RTRL (measured
3x slower for a 400 x 16 x 800 trace). ``after`` makes the new value depend
on the other reader's result by adding an exact zero made from it; an
optimization barrier does not achieve this on XLA:CPU.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def after(tree, done):
    """``tree`` plus 0 * (the first element of every leaf of ``done``): equal
    values (a NaN or inf in ``done`` propagates, as it would anyway), now
    computed after ``done``."""
    firsts = [jnp.real(jnp.ravel(d)[0]) for d in jax.tree_util.tree_leaves(done) if jnp.size(d)]
    if not firsts:
        return tree
    zero = 0.0 * sum(firsts[1:], firsts[0])
    return jax.tree.map(lambda t: t + zero.astype(t.dtype)
                        if jnp.issubdtype(t.dtype, jnp.inexact) else t, tree)
