"""The network as hardware sees it: populations, synapses and spike rates.

Read from the graph IR: every hidden group is a population of neurons, every
input leaf a population of external sources, and every mixing weight op
(dense, conv, sparse) a set of synapses from the populations its ``x`` is made
of to the group its ``y`` drives. The synapse matrix of an op is the
Jacobian of its core in ``x`` (the core is linear in ``x``), so a convolution
or a sparse op unrolls to its real connections. Rates are measured by running
the step: a source neuron's rate is the fraction of steps on which the ``x``
element it feeds is non-zero (its spike, or a graded event).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from transforms.ir.dependence import ELEM
from transforms.errors import CompileError
from transforms.ir.graph import MIXING, Graph
from transforms.ir.trace import evaluate

_PASS = {"reshape", "squeeze", "expand_dims", "convert_element_type", "copy", "copy_p"}


class LoweringError(CompileError):
    """The network cannot be lowered as written (or does not fit a profile)."""


@dataclasses.dataclass
class Population:
    name: str
    size: int
    kind: str                     # "input" (off chip) or "neurons"
    group: int | None = None
    k: int = 1                    # hidden states per neuron


@dataclasses.dataclass
class Connection:
    op: int                       # weight op index in the graph
    path: str                     # its parameter path
    pre: str                      # source population
    post: str                     # target population
    pre_idx: np.ndarray           # one entry per synapse (non-zero weight)
    post_idx: np.ndarray
    weight: np.ndarray
    source: str = ""              # the user's source line

    @property
    def n(self) -> int:
        return int(self.pre_idx.size)


@dataclasses.dataclass
class Netlist:
    populations: dict             # name -> Population, inputs first
    connections: list
    rates: dict                   # name -> events per neuron per step
    rates_basis: str = "assumed"  # how the rates were obtained

    def neurons(self) -> list[Population]:
        return [p for p in self.populations.values() if p.kind == "neurons"]

    @property
    def n_synapses(self) -> int:
        return sum(c.n for c in self.connections)


def group_name(graph: Graph, g: int) -> str:
    """The common pytree prefix of a group's leaves, e.g. ``hidden['layers'][0]``."""
    parts = [p.replace("]", "]\0").split("\0")[:-1] for p in graph.groups[g].paths]
    common = []
    for comps in zip(*parts):
        if len(set(comps)) > 1:
            break
        common.append(comps[0])
    if len(parts) == 1 or len(common) == len(parts[0]):
        common = parts[0][:-1] or parts[0]
    return "".join(common)


def _source_names(graph: Graph, deps: dict) -> set:
    t = graph.traced
    names = set()
    for (src, idx) in deps:
        if src == "h":
            names.add(group_name(graph, graph.group_of_leaf[idx]))
        elif src == "x":
            names.add(t.x_paths[idx])
        elif src == "y":
            names.update(group_name(graph, g) for g in graph.ops[idx].groups)
    return names


def _size(v) -> int:
    return int(math.prod(v.aval.shape))


def x_pieces(graph: Graph, op) -> list[tuple[str, int]]:
    """What an op's ``x`` is made of, in flattened order: (population, size)
    pieces, each the population's neurons in order. Follows concatenations and
    reshapes back to values that depend elementwise on a single population."""
    t = graph.traced
    producer = {o: e for e in t.eqns for o in e.outvars}
    sizes = {group_name(graph, g.index): g.size for g in graph.groups}
    sizes.update({p: _size(v) for p, v in zip(t.x_paths, t.x_vars)})

    def fail(why):
        raise LoweringError(
            f"cannot tell which neurons feed weight op {op.path}: {why}", path=op.path,
            source=op.source, hint="give each source population its own weight op, or "
            "concatenate 1-D spike vectors")

    def pieces(v):
        if isinstance(v, jcore.Literal):
            fail("a literal is part of its input")
        d = graph.deps.get(v, {})
        names = _source_names(graph, d)
        if len(names) == 1 and all(how is ELEM for how in d.values()):
            (name,) = names
            if sizes[name] == _size(v):
                return [(name, _size(v))]
        eqn = producer.get(v)
        if eqn is None:
            fail(f"{v} is not produced by any equation")
        name = eqn.primitive.name
        if name == "concatenate":
            if len(v.aval.shape) != 1:
                fail("it concatenates arrays of more than one dimension")
            return [p for a in eqn.invars for p in pieces(a)]
        if name in _PASS:
            return pieces(eqn.invars[0])
        fail(f"it is computed by {name} from {sorted(names) or 'nothing'}")

    return pieces(op.x_var)


def measure_x_activity(graph: Graph, params, hidden, xs) -> list:
    """Fraction of steps (and samples) on which each element of each mixing
    op's ``x`` is non-zero. ``xs``: inputs of shape (T, B, ...) as a list of
    leaves; ``hidden``: per-sample leaves, broadcast over the batch."""
    t = graph.traced
    ops = [op for op in graph.ops if op.kind in MIXING]
    rec = [op.x_var for op in ops]

    def one(h, x):
        outs, env = evaluate(t.jaxpr, t.consts, list(params) + list(h) + list(x), record=rec)
        return outs[:t.n_hidden], [(env[v] != 0).astype(jnp.float32) for v in rec]

    batch = xs[0].shape[1]
    h0 = [jnp.broadcast_to(h, (batch,) + jnp.shape(h)) for h in hidden]

    def body(h, x):
        h, act = jax.vmap(one)(h, x)
        return h, [a.mean(0) for a in act]

    _, act = jax.jit(lambda h, xs: jax.lax.scan(body, h, xs))(h0, list(xs))
    return [np.asarray(a.mean(0)).reshape(-1) for a in act]


def _matrix(graph: Graph, op, w_eff) -> np.ndarray:
    """(y size, x size) matrix of the op's linear map x -> y."""
    x0 = jnp.zeros(op.x_shape, op.weff_dtype)
    jac = jax.jacfwd(lambda x: graph.core(op, x, w_eff))(x0)
    return np.asarray(jac).reshape(_size(op.y_var), _size(op.x_var))


def build_netlist(graph: Graph, params, activity=None) -> Netlist:
    """Populations and synapses of ``graph`` with the weights in ``params``
    (flat leaves). ``activity``: ``measure_x_activity``'s result; without it
    every source is given rate 1 (an upper bound) and ``rates_basis`` says so."""
    t = graph.traced
    pops = {p: Population(p, _size(v), "input") for p, v in zip(t.x_paths, t.x_vars)}
    for g in graph.groups:
        name = group_name(graph, g.index)
        pops[name] = Population(name, g.size, "neurons", g.index, g.k)
    rates = {name: np.zeros(p.size) for name, p in pops.items()}
    conns = []
    mixing = [op for op in graph.ops if op.kind in MIXING]
    for k, op in enumerate(mixing):
        if len(op.groups) != 1:
            raise LoweringError(
                f"weight op {op.path} drives {len(op.groups)} populations; the lowering "
                "needs exactly one target population per weight op (an output-only op "
                "needs a neuron population, e.g. a leaky readout)",
                path=op.path, source=op.source)
        post = group_name(graph, op.groups[0])
        m = _matrix(graph, op, graph.weff(op, params[op.param]))
        start = 0
        for pre, n in x_pieces(graph, op):
            block = m[:, start:start + n]
            post_idx, pre_idx = np.nonzero(block)
            conns.append(Connection(op.index, op.path, pre, post, pre_idx, post_idx,
                                    block[post_idx, pre_idx], op.source))
            if activity is not None:
                rates[pre] = np.maximum(rates[pre], activity[k][start:start + n])
            start += n
    if activity is None:
        rates = {name: np.ones(p.size) for name, p in pops.items()}
    return Netlist(pops, conns, rates, "measured" if activity is not None
                   else "not measured: 1 event per step assumed (an upper bound)")


def dense_chain(sizes, rate: float = 0.1, seed: int = 0) -> Netlist:
    """A dense feed-forward netlist ``sizes[0] -> sizes[1] -> ...`` (the first
    population is the off-chip input), random non-zero weights: what hardware
    compile reports use as test networks."""
    rng = np.random.default_rng(seed)
    names = ["input"] + [f"layer{k}" for k in range(1, len(sizes))]
    pops = {n: Population(n, int(s), "input" if k == 0 else "neurons", None if k == 0 else k)
            for k, (n, s) in enumerate(zip(names, sizes))}
    conns = []
    for k in range(1, len(sizes)):
        post, pre = np.meshgrid(np.arange(sizes[k]), np.arange(sizes[k - 1]), indexing="ij")
        w = rng.normal(size=post.size)
        conns.append(Connection(k - 1, f"W{k}", names[k - 1], names[k], pre.ravel(),
                                post.ravel(), np.where(w == 0, 1e-3, w)))
    return Netlist(pops, conns, {n: np.full(p.size, rate) for n, p in pops.items()},
                   f"assumed: {rate} events per neuron per step")
