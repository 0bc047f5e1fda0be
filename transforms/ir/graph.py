"""The graph IR: what the compiler understood about one time step.

- ``WeightOp``: a parameter leaf W, the parameter-only ``chain`` that turns it
  into the effective weight W_eff (e.g. ``abs(W) * sign`` for Dale's law, a
  transpose, a broadcast of a bias), and the ``core`` equations that apply
  W_eff to the presynaptic input x: y = core(x, W_eff), bilinear in (x, W_eff).
- ``HiddenGroup``: hidden leaves of one population coupled elementwise; per
  neuron a K x K Jacobian block D = dh_t/dh_{t-1}.
- relations: ``op.groups`` are the hidden groups an op's output y drives
  elementwise (Df = dh_t/dy_t is per neuron); ``op.pre`` names what x is made
  of (input leaves, hidden groups).

Later passes (local plasticity rules, hardware lowering) read the same IR:
each op's x, y and W, the groups and their sizes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from transforms.ir.trace import TracedStep, bind_eqn

# op kinds
DENSE, CONV, SCALE, BIAS, SPARSE, BCOO = "dense", "conv", "scale", "bias", "sparse", "bcoo"
ELEMWISE = "elementwise"                  # y = f(x, W_eff) elementwise, f any primitive
MIXING = {DENSE, CONV, SPARSE, BCOO}      # kinds whose output mixes neurons


@dataclasses.dataclass
class WeightOp:
    index: int
    param: int                       # index of the parameter leaf
    path: str                        # its pytree path
    kind: str
    chain: tuple[int, ...]           # equation indices param -> W_eff
    core: tuple[int, ...]            # equation indices (x, W_eff) -> y
    param_var: Any
    weff_var: Any
    x_var: Any                       # None for a bias (x is the constant 1)
    y_var: Any
    source: str
    groups: list[int] = dataclasses.field(default_factory=list)
    pre: list[str] = dataclasses.field(default_factory=list)
    one_post: bool = True            # each W_eff element feeds exactly one neuron
    bcast_shape: tuple | None = None # elementwise kinds: W_eff broadcast to this shape
    inputs: tuple = ()               # ELEMWISE: all runtime operands of f (x is the first)
    x_parts: tuple | None = None     # DENSE: (concatenate eqn, W_eff axis) when x = [x_1, x_2, ...]

    @property
    def mixing(self) -> bool:
        return self.kind in MIXING

    @property
    def w_shape(self):
        return tuple(self.param_var.aval.shape)

    @property
    def weff_shape(self):
        """Shape of the effective weight the traces see: an elementwise op's
        W_eff broadcast to its output, so each element drives one neuron."""
        if self.bcast_shape is not None:
            return tuple(self.bcast_shape)
        return tuple(self.weff_var.aval.shape)

    @property
    def weff_dtype(self):
        return self.weff_var.aval.dtype

    @property
    def x_shape(self):
        return () if self.x_var is None else tuple(self.x_var.aval.shape)

    @property
    def y_shape(self):
        return tuple(self.y_var.aval.shape)


@dataclasses.dataclass
class HiddenGroup:
    index: int
    leaves: list[int]                # hidden leaf indices, in order
    paths: list[str]
    shape: tuple                     # the neuron shape
    ops: list[int] = dataclasses.field(default_factory=list)
    slots: list[int] = dataclasses.field(default_factory=list)   # per-neuron state slots

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def k(self) -> int:
        """States per neuron (the size of its Jacobian block)."""
        return len(self.slots)


@dataclasses.dataclass(frozen=True)
class Approximation:
    """A cross-neuron path the online learners' traces cut (BPTT keeps it)."""
    primitive: str
    source: str
    into: str                        # the hidden leaf it reaches
    through: str                     # what it came from

    def __str__(self):
        return f"{self.through} -> {self.into} through {self.primitive} at {self.source}"


@dataclasses.dataclass(frozen=True)
class Graph:
    traced: TracedStep
    ops: list[WeightOp]
    groups: list[HiddenGroup]
    group_of_leaf: dict[int, int]
    const_env: Any                   # ConstEnv: values of parameter-free, input-free vars
    deps: dict = dataclasses.field(default_factory=dict)   # var -> {source: elementwise?}
    readout_paths: list = dataclasses.field(default_factory=list)  # traced leaky-readout paths
    linear_groups: dict = dataclasses.field(default_factory=dict)  # group -> LinearGroup
    local_ops: frozenset = frozenset()     # ops updated by a local rule, not by gradient
    local_post: dict = dataclasses.field(default_factory=dict)   # their path -> post var
    local_downstream: dict = dataclasses.field(default_factory=dict)  # path -> output-synapse ops
    feedback: dict = dataclasses.field(default_factory=dict)     # op -> fixed feedback matrix
    view: Any = None                 # HiddenView: hidden leaves as per-neuron state slots
    group_of_slot: dict = dataclasses.field(default_factory=dict)
    cuts: dict = dataclasses.field(default_factory=dict)  # equation -> operands held (None:
    #                                  all of it): what the traces' Jacobians do not differentiate
    approximations: tuple = ()       # the cross-neuron paths those cuts remove
    clocks: frozenset = frozenset()  # hidden leaves that evolve on their own
    loops: frozenset = frozenset()   # while_loop equations (forward-mode VJP)

    # -- evaluation of an op's pieces, used by the learners -------------------
    def weff(self, op: WeightOp, w):
        """W_eff = chain(W) (broadcast to ``op.weff_shape``)."""
        env = {op.param_var: w}
        for i in op.chain:
            eqn = self.traced.eqns[i]
            outs = bind_eqn(eqn, [self._read(env, v) for v in eqn.invars])
            env.update(zip(eqn.outvars, outs))
        w_eff = self._read(env, op.weff_var)
        if op.bcast_shape is not None and jnp.shape(w_eff) != op.weff_shape:
            w_eff = jnp.broadcast_to(w_eff, op.weff_shape)
        return w_eff

    def x_eff(self, op: WeightOp, inputs, w_eff):
        """The input the traces see for an elementwise y = f(x, W_eff): its
        slope df/dW_eff at the current point (``inputs``: the values of
        ``op.inputs``), so that the change of y is x_eff * dW_eff."""
        eqn = self.traced.eqns[op.core[0]]
        env = dict(zip(op.inputs, inputs))

        def f(w):
            return bind_eqn(eqn, [w if v is op.weff_var else self._read(env, v)
                                  for v in eqn.invars])[0]
        return jax.jvp(f, (w_eff,), (jnp.ones_like(w_eff),))[1]

    def core(self, op: WeightOp, x, w_eff):
        """y = core(x, W_eff) for one sample; a bias is W_eff * x, x = 1,
        broadcast to the add's output and reshaped as y."""
        if op.kind == BIAS:
            added = self.traced.eqns[op.core[0]].outvars[0].aval.shape
            return jnp.reshape(jnp.broadcast_to(w_eff * x, added), op.y_shape)
        if op.kind == ELEMWISE:     # linear in W_eff around the current point
            return jnp.reshape(x * w_eff, op.y_shape)
        env = {op.x_var: x, op.weff_var: w_eff}
        for i in op.core:
            eqn = self.traced.eqns[i]
            outs = bind_eqn(eqn, [self._read(env, v) for v in eqn.invars])
            env.update(zip(eqn.outvars, outs))
        return env[op.y_var]

    def _read(self, env, v):
        if isinstance(v, jcore.Literal):
            return v.val
        if v in env:
            return env[v]
        return self.const_env[v]

    def trained_ops(self) -> list[WeightOp]:
        """Ops of every parameter with a use that drives hidden state (they get
        eligibility traces, and all uses of such a parameter take their
        gradient from their own output's cotangent), except those a local
        rule updates."""
        driving = {op.param for op in self.ops if op.groups and op.index not in self.local_ops}
        return [op for op in self.ops if op.param in driving and op.index not in self.local_ops]

    # -- reporting -------------------------------------------------------------
    def memory(self) -> dict[str, int]:
        """Floats of learning state per sample for each algorithm (BPTT: per
        time step, to be multiplied by T)."""
        from transforms.ir.patch_forms import patch_form
        shared = {op.index: f.positions if (f := patch_form(self, op)) else 1
                  for op in self.trained_ops()}
        d = sum(self.groups[g].k * math.prod(op.weff_shape) * shared[op.index]
                for op in self.trained_ops() for g in op.groups)
        es = sum(math.prod(op.x_shape) for op in self.trained_ops()) + sum(
            self.groups[g].k * self.groups[g].size for op in self.trained_ops() for g in op.groups)
        hid = sum(g.k * g.size for g in self.groups)
        xs = sum(math.prod(op.x_shape) for op in self.ops)
        return {"bptt_per_step": hid + xs, "d_rtrl": d, "es_d_rtrl": es}

    def __str__(self) -> str:
        from transforms.ir.printing import format_graph
        return format_graph(self)

    __repr__ = __str__
