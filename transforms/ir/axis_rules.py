"""Per-primitive axis rules: which axes of an equation's outputs are which
axes of its inputs, and along which axes it mixes array elements.

Every axis of every runtime var gets a class (``AxisClasses``, a union-find).
A rule ``rule(eqn, ins, ac) -> (outs, mixes)`` receives the classes of each
input's axes (``None`` for a literal or an unlabelled constant), returns the
classes of each output's axes and the classes it mixes along (a reduction
axis, a contraction, a partial slice, a concatenation, a broadcast that
copies one value to many). Rules may ``ac.union`` classes (the same axis seen
twice) and ``ac.mark`` them: ``STATE`` for an axis that indexes distinct
state variables of one neuron (the axis of a ``stack`` or ``concatenate``),
``NEURON`` for an axis that indexes neurons (a weight op's output).

After all rules ran, every class is NEURON unless marked STATE only; an
equation mixes neurons when one of its mixing classes is NEURON. So slicing
``z[..., 0]`` of a state vector, a delay line ``concatenate([buf[1:],
s[None]])`` or ``z @ M`` with a constant 2 x 2 ``M`` act within each neuron,
while ``jnp.sum(s)`` or a layer norm over neurons mix. A new primitive is one
entry in ``AXIS_RULES``; a primitive without one is taken to mix every axis.
"""
from __future__ import annotations

NEURON, STATE, CHUNKED = "neuron", "state", "chunked"


class AxisClasses:
    """Union-find over axis classes, each with the set of kinds it was marked
    and, for an axis that is k equal chunks of another (a (2N,) state split
    into v and a), the link (part class, k)."""

    def __init__(self):
        self.parent: list[int] = []
        self.kinds: list[set] = []
        self.chunks: dict = {}          # root -> (part class, k)

    def fresh(self, n: int = 1):
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        self.kinds.extend(set() for _ in range(n))
        return tuple(range(start, start + n))

    def find(self, c: int) -> int:
        while self.parent[c] != c:
            self.parent[c] = self.parent[self.parent[c]]
            c = self.parent[c]
        return c

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb
            self.kinds[rb] |= self.kinds[ra]
            ca, cb = self.chunks.pop(ra, None), self.chunks.get(rb)
            if ca is not None and cb is not None:
                if ca[1] == cb[1]:
                    self.union(ca[0], cb[0])
                else:                   # chunked two ways: treat as mixing
                    self.kinds[self.find(rb)].add(NEURON)
            elif ca is not None:
                self.chunks[rb] = ca
        return self.find(rb)

    def mark(self, c: int, kind: str):
        self.kinds[self.find(c)].add(kind)

    def link_chunks(self, c: int, part: int, k: int):
        """Axis class ``c`` is ``k`` equal chunks of axis class ``part``."""
        r = self.find(c)
        if r in self.chunks:
            old, kk = self.chunks[r]
            if kk == k:
                self.union(old, part)
            else:
                self.kinds[r].add(NEURON)
        else:
            self.chunks[r] = (part, k)

    def chunk_of(self, c: int):
        return self.chunks.get(self.find(c))

    def kind(self, c: int) -> str:
        """NEURON when marked so; CHUNKED for k chunks of a neuron or state
        axis; STATE when marked STATE only; NEURON by default."""
        r = self.find(c)
        k = self.kinds[r]
        if NEURON in k:
            return NEURON
        link = self.chunks.get(r)
        if link is not None and self.kind(link[0]) != CHUNKED:
            return CHUNKED
        return STATE if k == {STATE} else NEURON


def _shape(v):
    return tuple(v.aval.shape)


def _labels(ins, eqn, ac, k):
    """Classes of input k, fresh ones for a constant operand."""
    return ins[k] if ins[k] is not None else ac.fresh(len(_shape(eqn.invars[k])))


def elementwise(eqn, ins, ac):
    """Same-shape operands (rank-0 operands broadcast): axes align."""
    shape = _shape(eqn.outvars[0])
    out = None
    for a, lab in zip(eqn.invars, ins):
        if lab is None or len(_shape(a)) != len(shape):
            continue
        out = lab if out is None else tuple(ac.union(x, y) for x, y in zip(out, lab))
    out = out if out is not None else ac.fresh(len(shape))
    return [out] * len(eqn.outvars), ()


def broadcast_in_dim(eqn, ins, ac):
    lab = _labels(ins, eqn, ac, 0)
    in_shape, out_shape = _shape(eqn.invars[0]), _shape(eqn.outvars[0])
    out = list(ac.fresh(len(out_shape)))
    mixes = []
    for i, d in enumerate(eqn.params["broadcast_dimensions"]):
        if in_shape[i] == out_shape[d]:
            out[d] = lab[i]
    mapped = {d for i, d in enumerate(eqn.params["broadcast_dimensions"])
              if in_shape[i] == out_shape[d]}
    mixes = [out[d] for d in range(len(out_shape)) if d not in mapped and out_shape[d] > 1]
    return [tuple(out)], mixes


def reshape(eqn, ins, ac):
    """Axes of size > 1 map one to one when reshape only adds or removes
    unit axes; otherwise the merged or split axes mix."""
    lab = _labels(ins, eqn, ac, 0)
    in_shape, out_shape = _shape(eqn.invars[0]), _shape(eqn.outvars[0])
    if eqn.params.get("dimensions"):
        return [ac.fresh(len(out_shape))], list(lab)
    big_in = [i for i, n in enumerate(in_shape) if n != 1]
    big_out = [i for i, n in enumerate(out_shape) if n != 1]
    out = list(ac.fresh(len(out_shape)))
    if [in_shape[i] for i in big_in] == [out_shape[i] for i in big_out]:
        for i, o in zip(big_in, big_out):
            out[o] = lab[i]
        return [tuple(out)], ()
    return [tuple(out)], [lab[i] for i in big_in] + [out[i] for i in big_out]


def squeeze(eqn, ins, ac):
    lab = _labels(ins, eqn, ac, 0)
    drop = {d % len(lab) for d in eqn.params["dimensions"]}
    return [tuple(c for i, c in enumerate(lab) if i not in drop)], ()


def transpose(eqn, ins, ac):
    lab = _labels(ins, eqn, ac, 0)
    return [tuple(lab[p] for p in eqn.params["permutation"])], ()


def reduce(eqn, ins, ac):
    lab = _labels(ins, eqn, ac, 0)
    axes = set(eqn.params["axes"])
    return ([tuple(c for i, c in enumerate(lab) if i not in axes)] * len(eqn.outvars),
            [lab[i] for i in axes if _shape(eqn.invars[0])[i] > 1])


def argreduce(eqn, ins, ac):
    lab = _labels(ins, eqn, ac, 0)
    axes = set(eqn.params["axes"])
    return [tuple(c for i, c in enumerate(lab) if i not in axes)], [lab[i] for i in axes]


def along_axis(key):
    """Scans and sorts along one axis (cumsum, sort): mix it."""
    def rule(eqn, ins, ac):
        lab = _labels(ins, eqn, ac, 0)
        ax = eqn.params[key] % len(lab) if lab else 0
        return [lab] * len(eqn.outvars), [lab[ax]] if lab else []
    return rule


def slice_(eqn, ins, ac):
    """A partial slice keeps the axis's class and mixes along it (it moves
    elements to other positions), harmless on a state axis. A slice that
    takes one of k equal chunks (``vt[n:2 * n]``) makes the axis chunked."""
    lab = _labels(ins, eqn, ac, 0)
    in_shape, out_shape = _shape(eqn.invars[0]), _shape(eqn.outvars[0])
    strides = eqn.params.get("strides") or (1,) * len(lab)
    out, mixes = list(lab), []
    for d, (c, a, b) in enumerate(zip(lab, in_shape, out_shape)):
        if a == b:
            continue
        mixes.append(c)
        start = eqn.params["start_indices"][d]
        if b > 1 and a % b == 0 and start % b == 0 and strides[d] == 1:
            out[d] = ac.fresh(1)[0]
            ac.link_chunks(c, out[d], a // b)
    return [tuple(out)], mixes


def dynamic_slice(eqn, ins, ac):
    """Reading one slot at a run-time index (``buf[i]`` of a ring buffer):
    that axis indexes slots of one neuron's buffer, a state axis."""
    lab = _labels(ins, eqn, ac, 0)
    in_shape, out_shape = _shape(eqn.invars[0]), _shape(eqn.outvars[0])
    mixes = [c for c, a, b in zip(lab, in_shape, out_shape) if a != b]
    for c, a, b in zip(lab, in_shape, out_shape):
        if b == 1 < a:
            ac.mark(c, STATE)
    return [lab], mixes


def dynamic_update_slice(eqn, ins, ac):
    """Writing one slot at a run-time index: a state axis, as above."""
    op, upd = _labels(ins, eqn, ac, 0), _labels(ins, eqn, ac, 1)
    s_op, s_up = _shape(eqn.invars[0]), _shape(eqn.invars[1])
    mixes = []
    for a, b, n, m in zip(op, upd, s_op, s_up):
        ac.union(a, b)
        if n != m:
            mixes.append(a)
            if m == 1:
                ac.mark(a, STATE)
    return [op], mixes


def _one_index(indices) -> bool:
    """The indices name a single position (no batch of positions)."""
    shape = _shape(indices)
    return all(n == 1 for n in shape[:-1]) if shape else True


def gather(eqn, ins, ac):
    """``x[i]`` at one run-time position along some axes: those are slot
    axes (state); gathering many positions mixes them. Window axes map
    through to the output's offset dims."""
    lab = _labels(ins, eqn, ac, 0)
    dn = eqn.params["dimension_numbers"]
    sizes = eqn.params["slice_sizes"]
    out_rank = len(_shape(eqn.outvars[0]))
    out = list(ac.fresh(out_rank))
    kept = [d for d in range(len(lab)) if d not in dn.collapsed_slice_dims
            and d not in getattr(dn, "operand_batching_dims", ())]
    for d, o in zip(kept, dn.offset_dims):
        if sizes[d] == _shape(eqn.invars[0])[d]:
            out[o] = lab[d]
    single = _one_index(eqn.invars[1])
    mixes = [lab[d] for d in range(len(lab)) if sizes[d] != _shape(eqn.invars[0])[d]]
    if single:
        for d in dn.start_index_map:
            ac.mark(lab[d], STATE)
    else:
        mixes += [out[o] for o in range(out_rank) if o not in dn.offset_dims]
    return [tuple(out)], mixes


def scatter(eqn, ins, ac):
    """``buf.at[i].set(v)`` at one run-time position: the indexed operand
    axes are slot axes (state); the update's window axes align with the
    operand's other axes. Scattering many positions mixes them."""
    op = _labels(ins, eqn, ac, 0)
    upd = _labels(ins, eqn, ac, 2)
    dn = eqn.params["dimension_numbers"]
    window = [d for d in range(len(op)) if d not in dn.inserted_window_dims
              and d not in getattr(dn, "operand_batching_dims", ())]
    for d, u in zip(window, dn.update_window_dims):
        if _shape(eqn.invars[0])[d] == _shape(eqn.invars[2])[u]:
            ac.union(op[d], upd[u])
    mixes = [op[d] for d in dn.scatter_dims_to_operand_dims]
    if _one_index(eqn.invars[1]):
        for d in dn.scatter_dims_to_operand_dims:
            ac.mark(op[d], STATE)
    else:
        mixes += list(upd)
    return [op], mixes


def concatenate(eqn, ins, ac):
    """The joined axis indexes the parts: a state axis unless it is already
    a neuron axis (then joining moves neurons: mixing). Parts of one size
    (> 1) along it make it chunked: k chunks of the parts' axis."""
    d = eqn.params["dimension"]
    rank = len(_shape(eqn.outvars[0]))
    sizes = {_shape(v)[d] for v in eqn.invars}
    if len(eqn.invars) > 1 and len(sizes) == 1 and sizes.pop() > 1:
        out = list(ac.fresh(rank))
        part = None
        for k in range(len(eqn.invars)):
            lab = _labels(ins, eqn, ac, k)
            for i in range(rank):
                if i != d:
                    out[i] = ac.union(out[i], lab[i])
            part = lab[d] if part is None else ac.union(part, lab[d])
        ac.link_chunks(out[d], part, len(eqn.invars))
        return [tuple(out)], [out[d]]
    out = list(ac.fresh(rank))
    for k in range(len(eqn.invars)):
        lab = _labels(ins, eqn, ac, k)
        for i in range(rank):
            out[i] = ac.union(out[i], lab[i])
    ac.mark(out[d], STATE)
    return [tuple(out)], [out[d]]


def stack(eqn, ins, ac):
    axis = eqn.params["axis"]
    rank = len(_shape(eqn.outvars[0]))
    rest = list(ac.fresh(rank - 1))
    for k in range(len(eqn.invars)):
        lab = _labels(ins, eqn, ac, k)
        rest = [ac.union(a, b) for a, b in zip(rest, lab)]
    new = ac.fresh(1)[0]
    ac.mark(new, STATE)
    out = rest[:axis] + [new] + rest[axis:]
    return [tuple(out)], [new]


def split(eqn, ins, ac):
    """Equal parts (``jnp.split(vt, 2)``) make the axis chunked."""
    lab = _labels(ins, eqn, ac, 0)
    ax = eqn.params["axis"]
    sizes = set(eqn.params["sizes"])
    if len(eqn.outvars) > 1 and len(sizes) == 1 and min(sizes) > 1:
        part = ac.fresh(1)[0]
        ac.link_chunks(lab[ax], part, len(eqn.outvars))
        out = tuple(part if i == ax else c for i, c in enumerate(lab))
        return [out] * len(eqn.outvars), [lab[ax]]
    return [lab] * len(eqn.outvars), [lab[ax]]


def pad(eqn, ins, ac):
    lab = _labels(ins, eqn, ac, 0)
    cfg = eqn.params["padding_config"]
    return [lab], [c for c, (lo, hi, inner) in zip(lab, cfg) if lo or hi or inner]


def rev(eqn, ins, ac):
    lab = _labels(ins, eqn, ac, 0)
    return [lab], [lab[d] for d in eqn.params["dimensions"]]


def dot_general(eqn, ins, ac):
    """Contracted axes mix; batch axes align; free axes pass through."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = _labels(ins, eqn, ac, 0), _labels(ins, eqn, ac, 1)
    mixes = []
    for a, b in zip(lc, rc):
        mixes.append(ac.union(lhs[a], rhs[b]))
    batch = [ac.union(lhs[a], rhs[b]) for a, b in zip(lb, rb)]
    free_l = [lhs[i] for i in range(len(lhs)) if i not in tuple(lc) + tuple(lb)]
    free_r = [rhs[i] for i in range(len(rhs)) if i not in tuple(rc) + tuple(rb)]
    return [tuple(batch + free_l + free_r)], mixes


def mixes_all(eqn, ins, ac):
    """Fallback: every output axis fresh, every input axis mixed."""
    mixes = [c for lab in ins if lab is not None for c in lab]
    return [ac.fresh(len(_shape(v))) for v in eqn.outvars], mixes


def fresh(eqn, ins, ac):
    """Outputs that depend on no runtime input (iota, random bits)."""
    return [ac.fresh(len(_shape(v))) for v in eqn.outvars], ()


ELEMENTWISE = frozenset("""
abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil conj
convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2
expm1 floor ge gt imag integer_pow is_finite le lgamma log log1p logistic lt max min
mul ne neg nextafter not or pow real reduce_precision rem round rsqrt sign
sin sinh sqrt square stop_gradient sub tan tanh xor complex shift_left
shift_right_logical shift_right_arithmetic population_count clz square polygamma
igamma igammac igamma_grad_a random_gamma_grad bessel_i0e bessel_i1e regularized_incomplete_beta
""".split())

AXIS_RULES = {name: elementwise for name in ELEMENTWISE}
AXIS_RULES.update({
    "select_n": elementwise, "clamp": elementwise,
    "broadcast_in_dim": broadcast_in_dim, "reshape": reshape, "squeeze": squeeze,
    "transpose": transpose,
    "reduce_sum": reduce, "reduce_max": reduce, "reduce_min": reduce, "reduce_prod": reduce,
    "reduce_and": reduce, "reduce_or": reduce, "reduce_xor": reduce,
    "argmax": argreduce, "argmin": argreduce,
    "cumsum": along_axis("axis"), "cumprod": along_axis("axis"),
    "cummax": along_axis("axis"), "cummin": along_axis("axis"),
    "cumlogsumexp": along_axis("axis"), "sort": along_axis("dimension"),
    "slice": slice_, "dynamic_slice": dynamic_slice,
    "dynamic_update_slice": dynamic_update_slice, "concatenate": concatenate,
    "gather": gather, "scatter": scatter, "scatter-add": scatter, "scatter_add": scatter,
    "scatter-mul": scatter, "scatter-min": scatter, "scatter-max": scatter,
    "stack": stack, "split": split, "pad": pad, "rev": rev, "dot_general": dot_general,
    "iota": fresh, "random_bits": fresh, "random_seed": fresh, "random_wrap": fresh,
    "random_unwrap": fresh, "threefry2x32": fresh,
})
