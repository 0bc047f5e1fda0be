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

import jax.numpy as jnp
from jax.extend import core as jcore

from transforms.trace import TracedStep, _bind

# op kinds
DENSE, CONV, SCALE, BIAS, SPARSE, BCOO = "dense", "conv", "scale", "bias", "sparse", "bcoo"
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

    @property
    def mixing(self) -> bool:
        return self.kind in MIXING

    @property
    def w_shape(self):
        return tuple(self.param_var.aval.shape)

    @property
    def weff_shape(self):
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
    shape: tuple
    ops: list[int] = dataclasses.field(default_factory=list)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def k(self) -> int:
        return len(self.leaves)


@dataclasses.dataclass
class Graph:
    traced: TracedStep
    ops: list[WeightOp]
    groups: list[HiddenGroup]
    group_of_leaf: dict[int, int]
    const_env: dict                  # concrete values of parameter-free, input-free vars
    deps: dict = dataclasses.field(default_factory=dict)   # var -> {source: elementwise?}
    readout_paths: list = dataclasses.field(default_factory=list)  # traced leaky-readout paths
    linear_groups: dict = dataclasses.field(default_factory=dict)  # group -> LinearGroup
    local_ops: frozenset = frozenset()     # ops updated by a local rule, not by gradient
    local_post: dict = dataclasses.field(default_factory=dict)   # their path -> post var
    local_downstream: dict = dataclasses.field(default_factory=dict)  # path -> output-synapse ops
    feedback: dict = dataclasses.field(default_factory=dict)     # op -> fixed feedback matrix

    # -- evaluation of an op's pieces, used by the learners -------------------
    def weff(self, op: WeightOp, w):
        """W_eff = chain(W)."""
        env = {op.param_var: w}
        for i in op.chain:
            eqn = self.traced.eqns[i]
            outs = _bind(eqn, [self._read(env, v) for v in eqn.invars])
            env.update(zip(eqn.outvars, outs))
        return self._read(env, op.weff_var)

    def core(self, op: WeightOp, x, w_eff):
        """y = core(x, W_eff) for one sample; a bias is W_eff * x, x = 1,
        broadcast to the add's output and reshaped as y."""
        if op.kind == BIAS:
            added = self.traced.eqns[op.core[0]].outvars[0].aval.shape
            return jnp.reshape(jnp.broadcast_to(w_eff * x, added), op.y_shape)
        env = {op.x_var: x, op.weff_var: w_eff}
        for i in op.core:
            eqn = self.traced.eqns[i]
            outs = _bind(eqn, [self._read(env, v) for v in eqn.invars])
            env.update(zip(eqn.outvars, outs))
        return env[op.y_var]

    def _read(self, env, v):
        if isinstance(v, jcore.Literal):
            return v.val
        if v in env:
            return env[v]
        return self.const_env[v]

    def trained_ops(self) -> list[WeightOp]:
        """Ops whose output drives hidden state (they get eligibility traces),
        except those a local rule updates."""
        return [op for op in self.ops if op.groups and op.index not in self.local_ops]

    # -- reporting -------------------------------------------------------------
    def memory(self) -> dict[str, int]:
        """Floats of learning state per sample for each algorithm (BPTT: per
        time step, to be multiplied by T)."""
        d = sum(self.groups[g].k * math.prod(op.weff_shape)
                for op in self.trained_ops() for g in op.groups)
        es = sum(math.prod(op.x_shape) for op in self.trained_ops()) + sum(
            self.groups[g].k * self.groups[g].size for op in self.trained_ops() for g in op.groups)
        hid = sum(g.k * g.size for g in self.groups)
        xs = sum(math.prod(op.x_shape) for op in self.ops)
        return {"bptt_per_step": hid + xs, "d_rtrl": d, "es_d_rtrl": es}

    def __str__(self) -> str:
        t = self.traced
        lines = ["BrainScale graph", "",
                 f"inputs: {', '.join(f'{p} {_shape(v)}' for p, v in zip(t.x_paths, t.x_vars))}",
                 f"outputs: {', '.join(f'{p} {_shape(v)}' for p, v in zip(t.out_paths, t.out_vars))}",
                 "", "hidden groups (coupled elementwise; K states per neuron):"]
        rows = [("group", "neurons", "K", "states", "driven by")]
        for g in self.groups:
            rows.append((f"G{g.index}", "x".join(map(str, g.shape)) or "1", str(g.k),
                         ", ".join(g.paths), ", ".join(f"W{o}" for o in g.ops) or "-"))
        lines += _table(rows)
        lines += ["", "weight ops:"]
        rows = [("op", "param", "kind", "W", "x (pre)", "y", "drives", "at")]
        for op in self.ops:
            rows.append((f"W{op.index}", op.path, op.kind, _dims(op.w_shape),
                         f"{_dims(op.x_shape)} ({', '.join(op.pre) or 'const 1'})",
                         _dims(op.y_shape),
                         ", ".join(f"G{g}" for g in op.groups) or "output only (exact gradient)",
                         op.source))
        lines += _table(rows)
        if self.readout_paths:
            lines += ["", "readout paths (filtered traces carry the loss through leaky readouts):"]
            lines += [f"  {p.describe(self)}" for p in self.readout_paths]
        mem = self.memory()
        lines += ["", "learning state per sample (floats): "
                  f"BPTT {mem['bptt_per_step']} x T, D-RTRL {mem['d_rtrl']}, "
                  f"ES-D-RTRL {mem['es_d_rtrl']}"]
        no_d = [f"W{op.index}" for op in self.trained_ops() if not op.one_post]
        if no_d:
            lines.append(f"D-RTRL unavailable for {', '.join(no_d)} (weights drive several "
                         "neurons each); use es_d_rtrl or bptt")
        return "\n".join(lines)

    __repr__ = __str__


def _shape(v):
    return _dims(tuple(v.aval.shape))


def _dims(shape):
    return "(" + ", ".join(map(str, shape)) + ")"


def _table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    out.insert(1, "  " + "  ".join("-" * w for w in widths))
    return out
