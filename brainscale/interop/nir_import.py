"""Rebuild a BrainScale network from a NIR graph (https://neuroir.org).

``from_nir`` returns a ``NIRNetwork``: ``net(x)`` is one time step for one
sample. Each NIR node becomes a BrainScale module simulated with the exact
exponential (zero-order-hold) step at ``dt``, input held constant over a
step:

* ``Linear`` / ``Affine`` -> ``Linear`` (weight transposed to (in, out));
* ``LIF`` -> ``LIF(reset='hard')`` with ``tau``, ``R = r``, ``v_rest = v_leak``;
* ``CubaLIF`` -> ``AlignPost(Delta(), Expon(tau_syn), LIF(...))``;
* ``LI`` -> ``LeakyIntegrator``; ``CubaLI`` -> ``AlignPost(Delta(), Expon, LeakyIntegrator)``;
* ``Conv2d``, ``SumPool2d``, ``AvgPool2d``, ``Flatten``, ``IF`` -> the
  modules of the same names (rules in ``nir_conv``); one sample is channels
  first ``(C, H, W)``;
* ``Input`` / ``Output``; a nested ``NIRGraph`` with one ``Input`` and one
  ``Output`` is flattened (its nodes get the prefix ``"<key>."``).

Each node's per-sample shape is worked out from the Input's along the edges
(``Conv2d``, pooling and ``Flatten`` by their own rules), and its module is
built for the shape that reaches it: a weight op's declared shape must match
it (else an error naming the edge); a neuron population (``LIF``, ``LI``,
``Cuba*``, ``IF``) takes it, a vector or a feature map, and each field must
hold one value, a number or an array that broadcasts to it (else an error
naming the field).

Nodes run in topological order. A cycle is cut where a depth-first walk
from the inputs meets it; the cut edge reads its source's output from the
previous step, kept as a ``HiddenState`` in ``net.delay``. When the cut
source is a weight op fed only by neurons, the cut moves to the neurons'
outputs, so recurrent layers keep the previous step's spikes (as
``Recurrent.spk`` does). The state starts at rest: ``v = v_leak`` (``IF``:
``v_reset``), synaptic currents and delayed spikes 0.

Nothing malformed is accepted: an unreadable file, a missing ``node``
group, a node NIR cannot build, a missing or non-numeric field, a time
constant or ``dt`` that is not a finite positive number, a NaN or inf
weight, a graph without an Input or Output node are each a
``NIRImportError`` naming the file, the node and the field.
"""
from __future__ import annotations

import copy
import math
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from brainscale.interop import nir_conv
from brainscale.interop.nir_common import NIRImportError
from brainscale.interop.nir_common import scalar, values
from brainscale.nn.neurons import LIF
from brainscale.nn.projections import AlignPost, Linear
from brainscale.nn.state import HiddenState, default_float, population_shape
from brainscale.nn.synapses import Delta, Expon
from transforms.lowering.optional import require

__all__ = ["NIRImportError", "NIRNetwork", "LeakyIntegrator", "from_nir"]

_STATEFUL = ("LIF", "CubaLIF", "LI", "CubaLI") + nir_conv.STATEFUL
_SUPPORTED = ("Input, Output, Linear, Affine, LIF, CubaLIF, LI, CubaLI, NIRGraph, "
              + ", ".join(nir_conv.IMPORT))


class LeakyIntegrator(nnx.Module):
    """NIR's leaky integrator ``tau dv/dt = (v_leak - v) + r I``, exact step
    for input held over the step. Hidden state per unit: ``v`` (starts at
    ``v_leak``), of shape ``size`` (an int or a tuple such as ``(C, H, W)``)::

        v' = v d + r (1 - d) I + v_leak (1 - d),     d = exp(-dt/tau)

    With ``r = 1/(1 - d)`` and ``v_leak = 0`` this is ``LeakyReadout``'s
    ``r' = r d + y``.
    """

    def __init__(self, size, *, dt, tau, r=1.0, v_leak=0.0):
        self.shape = population_shape(size)
        self.size = math.prod(self.shape)
        self.dt, self.tau, self.r, self.v_leak = float(dt), float(tau), float(r), float(v_leak)
        self.decay = math.exp(-self.dt / self.tau)
        self.gain = self.r * (1.0 - self.decay)
        self.bias = self.v_leak * (1.0 - self.decay)
        self.v = HiddenState(jnp.full(self.shape, self.v_leak, default_float()))

    def __call__(self, current):
        v = self.v[...] * self.decay + self.gain * current + self.bias
        self.v[...] = v
        return v


class NIRNetwork(nnx.Module):
    """A NIR graph as one time step. ``plan`` lists ``(key, kind, preds)`` in
    evaluation order (kind: ``'input'``, ``'output'`` or ``'node'``; preds:
    ``(source key, delayed)`` pairs); ``nodes`` holds the modules by NIR key;
    ``shapes`` each node's per-sample output shape; ``delay`` the previous
    step's outputs of the sources of delayed edges."""

    def __init__(self, modules, plan, shapes, delayed_sources):
        self.nodes = nnx.Dict(modules)
        self.plan = tuple(plan)
        self.shapes = tuple((k, tuple(v)) for k, v in shapes.items())
        self.inputs = tuple(k for k, kind, _ in self.plan if kind == "input")
        self.outputs = tuple(k for k, kind, _ in self.plan if kind == "output")
        self.delay = nnx.Dict({k: HiddenState(jnp.zeros(shapes[k], default_float()))
                               for k in delayed_sources})

    def step(self, x):
        """One step; returns every node's output by key. ``x`` is the input
        array, or a dict by Input key when the graph has several inputs."""
        vals = {}
        for key, kind, preds in self.plan:
            if kind == "input":
                vals[key] = x[key] if len(self.inputs) > 1 else x
                continue
            total = None
            for src, delayed in preds:
                val = self.delay[src][...] if delayed else vals[src]
                total = val if total is None else total + val
            vals[key] = total if kind == "output" else self.nodes[key](total)
        for src in self.delay:
            self.delay[src][...] = vals[src]
        return vals

    def __call__(self, x):
        vals = self.step(x)
        if len(self.outputs) == 1:
            return vals[self.outputs[0]]
        return {k: vals[k] for k in self.outputs}


def _lif(key, node, shape, dt, tau, R):
    v_th = scalar(key, node, "v_threshold", shape=shape)
    v_reset = scalar(key, node, "v_reset", shape=shape)
    if not v_th > v_reset:
        raise NIRImportError(f"node {key!r} ({type(node).__name__}): needs "
                             f"v_threshold > v_reset (got {v_th}, {v_reset})")
    v_leak = scalar(key, node, "v_leak", shape=shape)
    return LIF(shape, dt=dt, tau=tau, v_th=v_th, v_reset=v_reset, v_rest=v_leak, R=R,
               reset="hard", v_init=v_leak)


def _check(key, node, dt):
    """Refuse a node type from_nir has no rule for, or a neuron without ``dt``."""
    kind = type(node).__name__
    if kind not in _STATEFUL and kind not in nir_conv.IMPORT \
            and kind not in ("Input", "Output", "Linear", "Affine"):
        raise NIRImportError(f"node {key!r}: NIR type {kind} is not supported by from_nir "
                             f"(supported: {_SUPPORTED})")
    if dt is None and kind in _STATEFUL:
        raise NIRImportError(f"node {key!r} ({kind}) needs a time step: pass "
                             "from_nir(..., dt=...) or store metadata['dt'] in the graph")


def _build(key, node, dt, shape):
    """The BrainScale module for one NIR node whose per-sample input has
    ``shape`` (``None`` for Input/Output)."""
    import nir
    kind = type(node).__name__
    if isinstance(node, (nir.Input, nir.Output)):
        return None
    if isinstance(node, (nir.Linear, nir.Affine)):
        w = values(key, node, "weight")
        if w.ndim != 2:
            raise NIRImportError(f"node {key!r} ({kind}): weight of shape {w.shape} is not 2-D")
        m = Linear(w.shape[1], w.shape[0], rngs=nnx.Rngs(0), use_bias=kind == "Affine",
                   w_init=lambda k, s, d: jnp.asarray(w.T, d))
        if kind == "Affine":
            b = values(key, node, "bias")
            if b.size != w.shape[0]:
                raise NIRImportError(f"node {key!r} (Affine): bias has {b.size} values for "
                                     f"{w.shape[0]} outputs")
            m.b[...] = jnp.asarray(b.reshape(w.shape[0]), m.b[...].dtype)
        return m
    if kind in nir_conv.IMPORT:
        return nir_conv.IMPORT[kind](key, node, dt, shape)

    def p(name, positive=False):
        return scalar(key, node, name, positive, shape)

    if kind == "LIF":
        return _lif(key, node, shape, dt, p("tau", True), p("r"))
    if kind == "LI":
        return LeakyIntegrator(shape, dt=dt, tau=p("tau", True), r=p("r"), v_leak=p("v_leak"))
    # Cuba*: NIR's ZOH current I' = I e + w_in (1 - e) x is (w_in (1 - e)) times
    # Expon's g' = g e + x, so the membrane gain becomes r w_in (1 - e).
    syn = Expon(shape, tau=p("tau_syn", True), dt=dt)
    gain = p("r") * p("w_in") * (1.0 - syn.decay)
    if kind == "CubaLIF":
        post = _lif(key, node, shape, dt, p("tau_mem", True), gain)
    else:
        post = LeakyIntegrator(shape, dt=dt, tau=p("tau_mem", True), r=gain, v_leak=p("v_leak"))
    return AlignPost(Delta(), syn, post)


def _flatten(graph):
    """Nodes and edges with nested ``NIRGraph`` nodes spliced in."""
    import nir
    nodes, edges, entry, exit_ = {}, [], {}, {}
    for k, n in graph.nodes.items():
        if not isinstance(n, nir.NIRGraph):
            nodes[k] = n
            continue
        sub_nodes, sub_edges = _flatten(n)
        ins = [s for s, v in sub_nodes.items() if isinstance(v, nir.Input)]
        outs = [s for s, v in sub_nodes.items() if isinstance(v, nir.Output)]
        if len(ins) != 1 or len(outs) != 1 or (ins[0], outs[0]) in sub_edges:
            raise NIRImportError(f"node {k!r} (NIRGraph): a subgraph needs one Input and one "
                                 "Output, not joined directly")
        entry[k] = [f"{k}.{b}" for a, b in sub_edges if a == ins[0]]
        exit_[k] = [f"{k}.{a}" for a, b in sub_edges if b == outs[0]]
        nodes.update({f"{k}.{s}": v for s, v in sub_nodes.items() if s not in (ins[0], outs[0])})
        edges += [(f"{k}.{a}", f"{k}.{b}") for a, b in sub_edges
                  if a != ins[0] and b != outs[0]]
    for a, b in graph.edges:
        edges += [(s, d) for s in exit_.get(a, [a]) for d in entry.get(b, [b])]
    return nodes, edges


def _topo(keys, edges, delayed):
    """Kahn's order over the edges not in ``delayed`` (ties in ``keys`` order);
    ``None`` if those edges still have a cycle."""
    preds = {k: {a for a, b in edges if b == k and (a, b) not in delayed} for k in keys}
    order, done, left = [], set(), list(keys)
    while left:
        k = next((k for k in left if preds[k] <= done), None)
        if k is None:
            return None
        order.append(k)
        done.add(k)
        left.remove(k)
    return order


def _schedule(keys, edges, inputs, stateful):
    """Evaluation order and the set of delayed (previous-step) edges."""
    succ = {k: [b for a, b in edges if a == k] for k in keys}
    pred = {k: [a for a, b in edges if b == k] for k in keys}
    state, back = {}, set()                    # depth-first walk: 1 on the stack, 2 done
    for root in inputs:
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            u, it = stack[-1]
            v = next(it, None)
            if v is None:
                state[u] = 2
                stack.pop()
            elif state.get(v) == 1:
                back.add((u, v))
            elif v not in state:
                state[v] = 1
                stack.append((v, iter(succ[v])))
    unreached = [k for k in keys if k not in state]
    if unreached:
        raise NIRImportError(f"nodes {unreached} are not reachable from an Input node")
    delayed = set(back)
    for u, v in sorted(back):                  # cut at the neurons feeding a weight op
        if u not in stateful and pred[u] and all(p in stateful for p in pred[u]):
            trial = (delayed - {(u, v)}) | {(p, u) for p in pred[u]}
            if _topo(keys, edges, trial) is not None:
                delayed = trial
    return _topo(keys, edges, delayed), delayed


def _modules(nodes, order, edges, delayed, dt):
    """Each node's module and per-sample output shape, built in evaluation
    order for the shape that reaches it along the undelayed edges (a node
    fed only by delayed edges takes the shape it declares; delayed edges
    are checked at the end)."""
    modules, out, into = {}, {}, {}
    for k in order:
        node, kind = nodes[k], type(nodes[k]).__name__
        neuron = kind in _STATEFUL
        declared = nir_conv.declared_input(node)
        if neuron and declared == ():      # one value per field: the edges give the shape
            declared = None
        srcs = [a for a, b in edges if b == k and (a, b) not in delayed]
        got = {out[a] for a in srcs}
        if len(got) > 1:
            raise NIRImportError(f"node {k!r} ({kind}): its inputs {srcs} have different "
                                 f"shapes {sorted(got)}")
        shape = got.pop() if got else declared
        if shape is None:
            raise NIRImportError(f"node {k!r} ({kind}): the shape of its input is unknown")
        if declared is not None and shape != declared and not neuron:
            raise NIRImportError(f"edge {srcs[0]!r} -> {k!r}: {srcs[0]!r} gives shape {shape}, "
                                 f"but node {k!r} ({kind}) takes {declared}")
        into[k] = shape
        m = modules[k] = _build(k, node, dt, shape)
        if hasattr(m, "output_shape"):
            try:
                out[k] = m.output_shape(shape)
            except ValueError as e:
                raise NIRImportError(f"node {k!r} ({kind}): {e}") from None
        elif m is None or neuron:
            out[k] = shape
        else:
            out[k] = tuple(int(n) for n in np.atleast_1d(node.output_type["output"]))
    for a, b in sorted(delayed):
        if out[a] != into[b]:
            raise NIRImportError(f"edge {a!r} -> {b!r}: {a!r} gives shape {out[a]}, but node "
                                 f"{b!r} ({type(nodes[b]).__name__}) takes {into[b]}")
    return modules, out


def read_graph(path):
    """A ``nir.NIRGraph`` from a ``.nir`` (HDF5) file; every failure is a
    ``NIRImportError`` naming the file (and the node NIR could not build).
    A graph that fails NIR's type check (e.g. ``LIF`` fields of shape ``(1,)``
    after a ``Conv2d``) is read unchecked; ``from_nir`` checks the shapes."""
    require("nir", "h5py", what="reading a NIR file")
    import h5py
    import nir
    from nir.serialization import hdf2dict

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NIRImportError(f"{path}: not a file")
    try:
        f = h5py.File(path, "r")
    except Exception as e:                  # noqa: BLE001 - h5py raises OSError variants
        raise NIRImportError(f"{path}: not an HDF5 file ({type(e).__name__}: {e})") from None
    with f:
        if "node" not in f:
            raise NIRImportError(f"{path}: no 'node' group at the top (not a NIR file)")
        try:
            data = hdf2dict(f["node"])
        except Exception as e:              # noqa: BLE001 - a damaged file
            raise NIRImportError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    for key, sub in (data.get("nodes") or {}).items() if isinstance(data, dict) else ():
        try:
            nir.dict2NIRNode(dict(sub))
        except Exception as e:              # noqa: BLE001 - named below
            kind = sub.get("type", "?") if isinstance(sub, dict) else "?"
            kind = kind.decode() if isinstance(kind, bytes) else kind
            raise NIRImportError(f"{path}: node {key!r} ({kind}) cannot be built: "
                                 f"{type(e).__name__}: {e}") from None
    try:                                    # NIR's from_dict edits the nodes' dicts
        return nir.dict2NIRNode(copy.deepcopy(data))
    except Exception:                       # noqa: BLE001 - e.g. NIR's type check, retried
        pass
    try:   # a neuron with one value per field after a Conv2d fails NIR's type check
        return nir.dict2NIRNode({**data, "type_check": False})
    except Exception as e:                  # noqa: BLE001
        raise NIRImportError(f"{path}: not a valid NIR graph ({type(e).__name__}: {e})") \
            from None


def from_nir(graph_or_path, *, dt=None):
    """Rebuild a ``NIRGraph`` (or a ``.nir`` file) as a ``NIRNetwork``.

    ``dt`` is the argument if given, else ``graph.metadata['dt']``; it is
    required when the graph has neurons. Unsupported nodes raise
    ``NIRImportError`` naming the node key and type.
    """
    if isinstance(graph_or_path, (str, os.PathLike)):
        require("nir", "h5py", what="NIR import (from_nir of a file)")
        path = os.fspath(graph_or_path)
        try:
            return _from_graph(read_graph(path), dt)
        except NIRImportError as e:
            if str(e).startswith(path):
                raise
            raise NIRImportError(f"{path}: {e}") from None
    return _from_graph(graph_or_path, dt)


def _from_graph(graph, dt):
    require("nir", what="NIR import (from_nir)")
    import nir
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir needs a nir.NIRGraph or a path, got {type(graph).__name__}")
    if dt is None and "dt" in (graph.metadata or {}):
        dt = graph.metadata["dt"]
    if dt is not None:
        try:
            dt = float(np.asarray(dt, np.float64))
        except (TypeError, ValueError):
            raise NIRImportError(f"dt {dt!r} is not a number") from None
        if not (math.isfinite(dt) and dt > 0):
            raise NIRImportError(f"dt must be a finite positive number of seconds, got {dt}")
    nodes, edges = _flatten(graph)
    for k, n in nodes.items():
        _check(k, n, dt)
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if not inputs:
        raise NIRImportError("the graph has no Input node")
    if not any(isinstance(n, nir.Output) for n in nodes.values()):
        raise NIRImportError("the graph has no Output node: nothing would be read out")
    stateful = {k for k, n in nodes.items() if type(n).__name__ in _STATEFUL}
    order, delayed = _schedule(list(nodes), edges, inputs, stateful)
    modules, shapes = _modules(nodes, order, edges, delayed, dt)
    plan = []
    for k in order:
        kind = ("input" if isinstance(nodes[k], nir.Input) else
                "output" if isinstance(nodes[k], nir.Output) else "node")
        preds = tuple((a, (a, b) in delayed) for a, b in edges if b == k)
        if kind != "input" and not preds:
            raise NIRImportError(f"node {k!r} ({type(nodes[k]).__name__}) has no input edge")
        plan.append((k, kind, preds))
    return NIRNetwork({k: m for k, m in modules.items() if m is not None}, plan, shapes,
                      sorted({a for a, _ in delayed}))
