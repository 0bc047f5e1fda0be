"""Values of a traced step's constant-only vars, computed when read.

The learners evaluate pieces of the step on their own (an op's ``core``, its
weight chain ``W -> W_eff``), and those pieces read vars that depend on no
input and no parameter: sparse index arrays, masks, their reshapes. Holding
every such value would keep a copy of each intermediate of the index
computations (at 10^8 synapses, gigabytes). ``ConstEnv[v]`` instead
computes ``v`` when asked, from the traced constants: once, at trace time
(then kept), unless ``v`` is large and only a reshape, broadcast, transpose
or conversion of another value (``LAYOUT``): that is left to the caller's
trace, where XLA fuses it into the consumer or makes it a view, so an index
array is never copied to be read in another shape.

    env = ConstEnv(traced, kind)     # kind: find_uses' var kinds (None: constant)
    v in env; env[v]
"""
from __future__ import annotations

import jax
import numpy as np
from jax.extend import core as jcore

CACHE_BYTES = 64 * 1024
LAYOUT = {"reshape", "broadcast_in_dim", "squeeze", "expand_dims", "transpose",
          "convert_element_type", "copy", "copy_p"}


class ConstEnv:
    """The constant-only vars of ``traced`` (``kind.get(v) is None``: no
    runtime input, no parameter), by var; values computed on demand. An
    equation that reads a parameter may still define a constant-only output
    (a sparse matrix's transpose permutes its indices and its data in one
    sort): parameters stand in as zeros there."""

    def __init__(self, traced, kind: dict):
        self._consts = dict(zip(traced.jaxpr.constvars, traced.consts))
        self._params = set(traced.param_vars)
        self._kind = kind
        self._producer = {}
        known = set(self._consts) | self._params
        for eqn in traced.eqns:
            if (not eqn.effects and all(kind.get(o) != "rt" for o in eqn.outvars)
                    and all(isinstance(a, jcore.Literal) or a in known for a in eqn.invars)):
                known.update(eqn.outvars)
                for o in eqn.outvars:
                    self._producer[o] = eqn
        self._cache: dict = {}

    def held_bytes(self) -> int:
        """Bytes of the values computed and kept so far (the traced
        constants themselves not counted: the step holds those anyway)."""
        return int(sum(getattr(a, "nbytes", 0) for a in self._cache.values()))

    def __contains__(self, v) -> bool:
        return v in self._consts or (v in self._producer and self._kind.get(v) is None)

    def __getitem__(self, v):
        if v not in self:
            raise KeyError(v)
        return self._value(v)

    def _value(self, v):
        if v in self._consts:
            return self._consts[v]
        if v in self._params:
            return np.zeros(v.aval.shape, v.aval.dtype)     # no eager compile per shape
        if v in self._cache:
            return self._cache[v]
        from transforms.ir.trace import bind_eqn
        eqn = self._producer[v]
        read = lambda: [a.val if isinstance(a, jcore.Literal) else self._value(a)
                        for a in eqn.invars]
        if eqn.primitive.name in LAYOUT and _nbytes(v) >= CACHE_BYTES:
            return bind_eqn(eqn, read())[eqn.outvars.index(v)]   # in the caller's context
        with jax.ensure_compile_time_eval():
            outs = bind_eqn(eqn, read())
        self._cache.update(zip(eqn.outvars, outs))
        return self._cache[v]


def _nbytes(v) -> int:
    return int(np.prod(v.aval.shape)) * np.dtype(v.aval.dtype).itemsize
