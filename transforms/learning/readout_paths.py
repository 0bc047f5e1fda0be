"""Find linear leaky readouts whose temporal paths the traces can carry.

A hidden group R of one leaf is a *linear readout* when its update is affine
with scalar constant coefficients,

    r_t = kappa r_{t-1} + sum_o c_o y_o,t (+ const),

and each y_o = core_o(x_o, W_o) comes from a weight op whose input x_o is an
elementwise function of one neuron group G (e.g. x_o = spikes of G). Then for
every op k driving G the loss at step t reaches W_k through r_{t-1} along

    d r_{t-1} / d W_k = c_o core_o(Xbar_{t-1}, W_o),
    Xbar_t = kappa Xbar_{t-1} + d x_o,t / d W_k,

so a filtered copy of the op's trace (e-prop's readout-filtered eligibility)
adds the term c_o core_o^T(dl_t/dr_{t-1}) . Xbar_{t-1}, exact when the trace
is. The per-neuron structure is kept because x_o is one value per neuron of G.
A readout of K linear states (``linear_blocks``: r_t = A r_{t-1} + c y_t,
e.g. a synaptic current into a membrane) is K such paths, one per real mode
of A, each read through its eigenvector.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from jax.extend import core as jcore

from transforms.ir.dependence import ELEM
from transforms.ir.graph import BIAS, Graph


@dataclasses.dataclass(frozen=True)
class ReadoutPath:
    op: int             # index of the trained op k driving G
    readout_op: int     # index of the trained op o feeding R
    group: int          # G
    readout_group: int  # R
    kappa: float
    coeff: float
    x_slice: tuple | None = None   # (start, stop) of G's part when x_o concatenates parts
    through: bool = False          # R is a spiking layer: its learning signal is weighted
                                   # by the driving op's neuron trace (``layer_paths``)
    via: int | None = None         # through R into the readout of path ``via``
    mix: tuple | None = None       # ((slot, v), ...): a mode of a multi-state readout,
                                   # its signal sum_j v_j dl/dr_j (``linear_blocks``)

    def describe(self, graph: Graph) -> str:
        return (f"W{self.op} -> G{self.group} -> W{self.readout_op} -> "
                f"G{self.readout_group} (kappa {self.kappa:.4g})")


def _scalar(graph: Graph, a):
    """The value of a scalar constant operand, or None."""
    if isinstance(a, jcore.Literal):
        v = np.asarray(a.val)
    elif a in graph.const_env:
        v = np.asarray(graph.const_env[a])
    else:
        return None
    return float(v.ravel()[0]) if v.size and np.all(v == v.ravel()[0]) else None


def _add(graph, eqn, ins):
    sign = -1.0 if eqn.primitive.name == "sub" else 1.0
    out = {}
    for k, (a, f) in enumerate(zip(eqn.invars, ins)):
        s = sign if k == 1 else 1.0
        if f is None:
            if _scalar(graph, a) is None and a not in graph.const_env:
                return None             # a runtime term outside the seeds
            f = {"const": 0.0}
        for src, c in f.items():
            out[src] = out.get(src, 0.0) + s * c
    return out


def _mul(graph, eqn, ins):
    if (ins[0] is None) == (ins[1] is None):
        return None                     # a product of two affine forms, or of none
    f, other = (ins[0], eqn.invars[1]) if ins[0] is not None else (ins[1], eqn.invars[0])
    k = _scalar(graph, other)
    return None if k is None else {src: k * c for src, c in f.items()}


def _div(graph, eqn, ins):
    if ins[0] is None or ins[1] is not None:
        return None                     # only an affine form over a constant
    k = _scalar(graph, eqn.invars[1])
    return None if not k else {src: c / k for src, c in ins[0].items()}


def _neg(graph, eqn, ins):
    return {src: -c for src, c in ins[0].items()}


def _same(graph, eqn, ins):
    return ins[0]


AFFINE_RULES = {"add": _add, "add_any": _add, "sub": _add, "mul": _mul, "div": _div, "neg": _neg,
                "convert_element_type": _same, "copy": _same, "copy_p": _same}


def affine_form(graph: Graph, seeds: dict, target, rules=AFFINE_RULES):
    """Propagate {source: coefficient} forms from ``seeds`` (var -> form) to
    ``target`` by the per-primitive ``rules``; None if the target is not
    affine in the seeds with scalar constant coefficients."""
    forms = dict(seeds)
    for eqn in graph.traced.eqns:
        ins = [forms.get(a) if not isinstance(a, jcore.Literal) else None for a in eqn.invars]
        if not eqn.outvars or eqn.outvars[0] in forms or not any(f is not None for f in ins):
            continue
        rule = rules.get(eqn.primitive.name)
        out = rule(graph, eqn, ins) if rule is not None else None
        for v in eqn.outvars:
            forms[v] = out
    return forms.get(target)


def find_readout_paths(graph: Graph, deps: dict) -> list[ReadoutPath]:
    paths = []
    for r_index, lin in linear_groups(graph).items():
        for o, G, k in _links(graph, deps, r_index):
            paths.append(ReadoutPath(k, o, G, r_index, lin.kappa, lin.coeff[o]))
    for r_index, blk in linear_blocks(graph).items():
        for o, G, k in _links(graph, deps, r_index):
            paths += [ReadoutPath(k, o, G, r_index, lam, c, mix=tuple(zip(blk.slots, v)))
                      for lam, v, c in blk.modes(o)]
    return [p for p in paths if p.coeff != 0.0]


def _links(graph: Graph, deps: dict, r_index: int):
    """(o, G, k) for each dense op o feeding readout group R whose input is
    an elementwise function of one group G, and each trained op k driving G
    (local ops have no trace)."""
    trained = {op.index for op in graph.trained_ops()}
    for o in (graph.ops[o] for o in graph.groups[r_index].ops):
        if o.kind == BIAS or o.x_var is None or not o.mixing:
            continue
        G = _source_group(graph, deps.get(o.x_var, {}), o)
        if G is not None:
            yield from ((o.index, G, k) for k in graph.groups[G].ops if k in trained)


def _source_group(graph: Graph, d: dict, o):
    """The one group G whose neurons x_o is an elementwise function of."""
    return _source_group_of(graph, d, o.x_shape, o)


def readout_paths(graph: Graph) -> list[ReadoutPath]:
    """All readout paths of a graph."""
    return find_readout_paths(graph, graph.deps)


@dataclasses.dataclass(frozen=True)
class LinearGroup:
    """A one-leaf group updated as r_t = kappa r_{t-1} + sum_o coeff[o] y_o."""
    kappa: float
    coeff: dict           # op index -> c_o


def _seeds(graph: Graph, R) -> dict:
    """Affine-form seeds of group R's update: its previous values and the
    outputs of the ops driving it. A bias op's y is the sum it adds b into
    (y = rest + b), so b is seeded and the rest (e.g. a dense op feeding the
    same readout) goes through."""
    t = graph.traced
    seeds = {t.hidden_in_vars[j]: {("h", j): 1.0} for j in R.leaves}
    seeds.update({graph.ops[o].weff_var if graph.ops[o].kind == BIAS
                  else graph.ops[o].y_var: {("y", o): 1.0} for o in R.ops})
    return seeds


def linear_groups(graph: Graph) -> dict[int, LinearGroup]:
    """Hidden groups whose update is affine with scalar constant coefficients
    in their previous value and the outputs of the ops driving them. Their
    trace is exact in factorised form: E_t = c (x filtered by kappa)."""
    t = graph.traced
    trained = {op.index for op in graph.trained_ops()}
    found = {}
    for R in graph.groups:
        if R.k != 1 or not R.ops or any(o not in trained for o in R.ops):
            continue
        j = R.leaves[0]
        form = affine_form(graph, _seeds(graph, R), t.hidden_out_vars[j])
        if not form or ("h", j) not in form or any(
                src != "const" and src != ("h", j) and src[0] != "y" for src in form):
            continue
        found[R.index] = LinearGroup(form[("h", j)], {o: form.get(("y", o), 0.0)
                                                      for o in R.ops})
    return found


@dataclasses.dataclass(frozen=True)
class LinearBlock:
    """A group of K one-slot leaves updated as r_t = A r_{t-1} + sum_o c_o
    y_o,t (+ const), e.g. Norse's leaky-integrator readout (a synaptic
    current into a membrane). With A = V diag(lam) V^-1 (real, distinct
    modes) it is K one-state readouts: mode m has decay lam_m, input
    coefficient (V^-1 c_o)_m and is read by the loss as sum_j V[j, m] dl/dr_j."""
    A: np.ndarray         # (K, K)
    coeff: dict           # op index -> (K,)
    slots: tuple          # the leaves' slots, in A's order

    def modes(self, op: int):
        """(lam_m, V[:, m], (V^-1 c_op)_m) per mode; none if A's modes are
        complex or repeated (no real partial fractions)."""
        lam, V = np.linalg.eig(self.A)
        scale = max(1.0, float(np.max(np.abs(lam))))
        gaps = np.abs(lam[:, None] - lam[None, :]) + np.eye(len(lam)) * scale
        if np.any(np.abs(lam.imag) > 1e-12 * scale) or np.min(gaps) < 1e-6 * scale:
            return []
        lam, V = lam.real, V.real
        c = np.linalg.solve(V, self.coeff[op])
        return [(float(lam[m]), tuple(float(x) for x in V[:, m]), float(c[m]))
                for m in range(len(lam))]


def linear_blocks(graph: Graph) -> dict[int, LinearBlock]:
    """Hidden groups of two or more one-slot leaves whose updates are all
    affine, with scalar constant coefficients, in the group's previous
    values and the outputs of the ops driving it."""
    t = graph.traced
    trained = {op.index for op in graph.trained_ops()}
    found = {}
    for R in graph.groups:
        slots = [graph.view.slots_of(j) for j in R.leaves]
        if len(R.leaves) < 2 or not R.ops or any(o not in trained for o in R.ops) or any(
                len(s) != 1 for s in slots):
            continue
        seeds = _seeds(graph, R)
        known = {("h", j) for j in R.leaves} | {("y", o) for o in R.ops} | {"const"}
        forms = [affine_form(graph, seeds, t.hidden_out_vars[j]) for j in R.leaves]
        if any(not f or set(f) - known for f in forms):
            continue
        A = np.array([[f.get(("h", j), 0.0) for j in R.leaves] for f in forms])
        found[R.index] = LinearBlock(A, {o: np.array([f.get(("y", o), 0.0) for f in forms])
                                         for o in R.ops}, tuple(s[0] for s in slots))
    return found


def layer_paths(graph: Graph, decay: float, found=()) -> list[ReadoutPath]:
    """Paths from a trained op k driving group G1 through a trained mixing op
    o whose input x_o is (a concatenated part of) an elementwise function of
    G1, into a non-linear group G2 (a spiking layer above). ES-D-RTRL
    carries them like readout paths with kappa = its decay: G2's dependence
    on W_k is approximated as (ef_o / c) o core_o(Xbar), ef_o the neuron
    factor of o's own trace and Xbar the decay-filtered d x_o / d W_k, so
    the lower layer's credit through the upper layer's memory is kept.
    Every path q of o (a readout path of G2, or a path of o into the layer
    above it) is continued by a path of k ``via`` q: weighted by q's
    filtered trace, filtered by q's kappa, pulled back from q's signal; so
    credit reaches the bottom layer through every layer and readout above.
    Indices count from the start of ``found``, which comes first."""
    trained = {op.index for op in graph.trained_ops()}
    lin = set(linear_groups(graph)) | set(linear_blocks(graph))
    links = []                 # (k, o, G1, G2, slice): k drives G1, which feeds o
    for o in graph.trained_ops():
        if o.kind == BIAS or not o.mixing or len(o.groups) != 1 or o.groups[0] in lin:
            continue
        for var, sl in _parts(graph, o):
            G = _source_group_of(graph, graph.deps.get(var, {}), tuple(var.aval.shape), o)
            if G is not None:
                links += [(k, o.index, G, o.groups[0], sl) for k in graph.groups[G].ops
                          if k in trained and k != o.index]
    paths = list(found) + [ReadoutPath(k, o, G, G2, float(decay), 1.0, x_slice=sl, through=True)
                           for k, o, G, G2, sl in links]
    done, i = set(), 0
    while i < len(paths):      # continue every path of o by each link into o
        q = paths[i]
        for k, o, G, G2, sl in links:
            if q.op == o and (k, i) not in done and len(paths) < MAX_PATHS:
                done.add((k, i))
                paths.append(ReadoutPath(k, o, G, G2, q.kappa, 1.0, x_slice=sl, through=True,
                                         via=i))
        i += 1
    return paths[len(found):]


MAX_PATHS = 256   # chains stop growing here (paths grow with the square of the depth)


def _parts(graph: Graph, o):
    """(var, slice) of x_o: the whole input, or each part of a concatenation
    along the one per-sample axis of a vector input."""
    if len(o.x_shape) != 1:
        return [(o.x_var, None)]
    if o.x_parts is None:
        return [(o.x_var, None)]
    cat = graph.traced.eqns[o.x_parts[0]]
    out, start = [], 0
    for v in cat.invars:
        n = v.aval.shape[cat.params["dimension"]] if len(v.aval.shape) else 1
        out.append((v, (start, start + n)))
        start += n
    return out


def _source_group_of(graph: Graph, d: dict, shape: tuple, o):
    """The one group G (not o's own) whose neurons ``shape``-shaped d's var is
    an elementwise function of."""
    groups = set()
    for (src, idx), how in d.items():
        if how is not ELEM:
            return None
        if src == "h":
            groups.add(graph.group_of_leaf[idx])
        elif src == "y":
            groups.update(graph.ops[idx].groups)
        else:
            return None
    if len(groups) != 1:
        return None
    G = groups.pop()
    return G if graph.groups[G].shape == shape and G != o.groups[0] else None
