"""Which runtime values depend on which sources, and through what.

Two passes over the flat step:

1. ``label_axes``: every axis of every runtime var gets a class by the
   primitive's rule in ``axis_rules.AXIS_RULES`` (calls, loops and custom
   derivatives recurse into their bodies); a weight op's output axes are
   neuron axes; a hidden leaf's input and output axes are one class. After
   this, each class is a neuron or a state axis, and each equation either
   acts within each neuron or mixes neurons.
2. ``propagate``: each runtime var carries its sources -- hidden inputs
   ``("h", j)``, step inputs ``("x", j)``, weight-op outputs ``("y", k)`` --
   with ``ELEM`` while every equation on the way acts within each neuron, or
   the ``(primitive, source line)`` of the first one that mixes. A weight op
   restarts its output's sources at ``("y", k)``; integer values carry none
   (no gradient flows through them). An equation that mixes neurons and
   depends on hidden state or a weight op is a *cut* of the online traces;
   the source ``("cut", i)`` follows its output, so the analysis sees which
   hidden leaves each cut reaches.
"""
from __future__ import annotations

from transforms.ir.axis_rules import AXIS_RULES, NEURON, AxisClasses, elementwise, mixes_all
from transforms.ir.trace import source_of
from transforms.ir.weight_ops import is_int, is_var

ELEM = None          # marker: dependence is elementwise (within each neuron)
CALLS = {"custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
         "custom_vjp_call_jaxpr": "fun_jaxpr", "jit": "jaxpr", "pjit": "jaxpr",
         "closed_call": "call_jaxpr", "core_call": "call_jaxpr", "remat": "jaxpr",
         "checkpoint": "jaxpr"}


def _inner(eqn, key):
    j = eqn.params[key]
    return j.jaxpr if hasattr(j, "jaxpr") else j


class AxisLabels:
    """Axis classes of the step's vars and each equation's mixing classes."""

    def __init__(self, elementwise_names=frozenset()):
        self.ac = AxisClasses()
        self.labels: dict = {}
        self.mixes: dict = {}           # (jaxpr id, eqn index) -> classes it mixes along
        self.extra = frozenset(elementwise_names)

    def of(self, a):
        if not is_var(a):
            return None
        return self.labels.get(a)

    def run(self, jaxpr, in_labels, skip=(), fixed=None):
        """Label ``jaxpr``'s vars from its inputs' labels; ``fixed`` gives
        the labels of some equations' outputs (weight ops) and ``skip`` the
        equations not to label (parameter-only ones)."""
        for v, lab in zip(jaxpr.invars, in_labels):
            self.labels[v] = lab          # None: a constant (its rules see no axes to mix)
        fixed = fixed or {}
        for i, eqn in enumerate(jaxpr.eqns):
            if i in skip:
                continue
            if i in fixed:
                for v, lab in zip(eqn.outvars, fixed[i]):
                    self.labels[v] = lab
                continue
            outs, mixes = self.rule(eqn)
            if all(is_int(v) for v in eqn.outvars):
                mixes = ()              # integer / boolean results carry no derivative
            self.mixes[(id(jaxpr), i)] = tuple(mixes)
            for v, lab in zip(eqn.outvars, outs):
                self.labels[v] = lab
        return [self.of(a) for a in jaxpr.outvars]

    def rule(self, eqn):
        name = eqn.primitive.name
        ins = [self.of(a) for a in eqn.invars]
        if name in CALLS and CALLS[name] in eqn.params:
            inner = _inner(eqn, CALLS[name])
            n = len(eqn.invars) - len(inner.invars)
            outs = self.run(inner, ins[n:])
            return outs, self._body_mixes(inner)
        if name == "while":
            return self._while(eqn, ins)
        if name == "scan":
            return self._scan(eqn, ins)
        if name == "cond":
            outs = None
            mixes = []
            for br in eqn.params["branches"]:
                o = self.run(br.jaxpr, ins[1:])
                mixes += self._body_mixes(br.jaxpr)
                outs = o if outs is None else [self._unify(a, b) for a, b in zip(outs, o)]
            return outs, mixes
        if all(lab is None for lab in ins):     # constants only: constant results
            return [None] * len(eqn.outvars), ()
        rule = AXIS_RULES.get(name) or (elementwise if name in self.extra else mixes_all)
        return rule(eqn, ins, self.ac)

    def _unify(self, a, b):
        if a is None or b is None:
            return a if b is None else b
        return tuple(self.ac.union(x, y) for x, y in zip(a, b))

    def _body_mixes(self, jaxpr):
        return [c for i in range(len(jaxpr.eqns)) for c in self.mixes.get((id(jaxpr), i), ())]

    def _while(self, eqn, ins):
        nc, nb = eqn.params["cond_nconsts"], eqn.params["body_nconsts"]
        body = eqn.params["body_jaxpr"].jaxpr
        consts, carry = ins[nc:nc + nb], ins[nc + nb:]
        carry = [c if c is not None else self.ac.fresh(len(v.aval.shape))
                 for c, v in zip(carry, eqn.invars[nc + nb:])]
        outs = self.run(body, consts + carry)
        outs = [self._unify(a, b) for a, b in zip(carry, outs)]
        return outs, self._body_mixes(body)

    def _scan(self, eqn, ins):
        nc, nk = eqn.params["num_consts"], eqn.params["num_carry"]
        body = eqn.params["jaxpr"].jaxpr
        consts, carry, xs = ins[:nc], ins[nc:nc + nk], ins[nc + nk:]
        carry = [c if c is not None else self.ac.fresh(len(v.aval.shape))
                 for c, v in zip(carry, eqn.invars[nc:nc + nk])]
        xs_in = [None if x is None else x[1:] for x in xs]
        outs = self.run(body, consts + carry + xs_in)
        carry_out = [self._unify(a, b) for a, b in zip(carry, outs[:nk])]
        ys = [self.ac.fresh(1) + (y if y is not None else self.ac.fresh(len(v.aval.shape) - 1))
              for y, v in zip(outs[nk:], eqn.outvars[nk:])]
        mixes = self._body_mixes(body) + [x[0] for x in xs if x is not None]
        return carry_out + ys, mixes

    def mixes_neurons(self, jaxpr, i) -> bool:
        return any(self.ac.kind(c) == NEURON for c in self.mixes.get((id(jaxpr), i), ()))

    def kinds(self, v):
        return tuple(self.ac.kind(c) for c in self.labels[v])


def _merge(into, deps, mixed_at=None):
    """Add ``deps`` to ``into``; an elementwise path wins over a mixing one
    (the mixing path is cut on its own, see ``propagate``). A cut passes on
    as it is: it names where the mixing happened."""
    for src, how in deps.items():
        if mixed_at is not None and how is ELEM and src[0] != "cut":
            how = mixed_at
        if src not in into or how is ELEM:
            into[src] = how


def propagate(t, labels: AxisLabels, in_deps, cores, skip=frozenset()):
    """Per-var sources through the flat step ``t.jaxpr``. ``cores`` maps the
    index of an op's last core equation to ``(op index, passthrough vars)``;
    ``skip``: equations whose outputs carry no sources (parameter-only ones,
    the inner equations of an op's core). Also returns the cuts: equation
    index -> (the hidden / weight-op sources it mixes, the operand positions
    to hold, or None for the whole equation)."""
    jaxpr = t.jaxpr
    deps = dict(zip(jaxpr.invars, in_deps))
    cut = {}

    def get(a):
        return deps.get(a, {}) if is_var(a) else {}

    for i, eqn in enumerate(jaxpr.eqns):
        if i in cores:
            k, passthrough = cores[i]
            d = {("y", k): ELEM}
            for a in passthrough:
                _merge(d, get(a))
            deps[eqn.outvars[0]] = d
            continue
        if i in skip:
            continue
        mixing = labels.mixes_neurons(jaxpr, i)
        where = (eqn.primitive.name, source_of(eqn))
        d = {}
        out_rank = max((len(v.aval.shape) for v in eqn.outvars), default=0)
        implicit_broadcast = AXIS_RULES.get(eqn.primitive.name) is elementwise
        shared = []     # rank-0 operands an elementwise op broadcasts to every neuron
        for k, a in enumerate(eqn.invars):
            if implicit_broadcast and is_var(a) and not a.aval.shape and out_rank > 0:
                shared.append(k)
            _merge(d, get(a), where if (mixing or k in shared) else None)
        held = None if mixing else tuple(
            k for k in shared if any(src[0] in ("h", "y") for src in get(eqn.invars[k])))
        if mixing:
            through = {src for src in d if src[0] in ("h", "y")}
        else:       # a held operand that was not mixed before (else that cut names it)
            through = {src for k in held or () for src, how in get(eqn.invars[k]).items()
                       if src[0] in ("h", "y") and how is ELEM}
        if (mixing and through) or held:
            cut[i] = (through, held)
            if through:
                d[("cut", i)] = ELEM
        for v in eqn.outvars:
            deps[v] = {} if is_int(v) else d
    return [get(a) for a in jaxpr.outvars], deps, cut
