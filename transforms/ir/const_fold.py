"""Drop the constant-only equations of a flat step jaxpr that compute nothing new.

A step that indexes with a closed-over array, ``s[pre]``, is traced by
``jax.numpy`` with the index normalised for negative entries,
``select_n(pre < 0, pre, pre + n)``, on the constant ``pre``. Evaluated at
run time, that is two passes over the index array and a second index array
of the same size per step (at 10^8 synapses, 400 MB written and read again
every step), although the result is ``pre`` itself whenever no entry is
negative. This pass evaluates such equations once, at trace time, and where
the value equals one of the equation's operands bit for bit, reads that
operand instead; constant-only equations that nothing reads any more are
dropped. Nothing else changes: an equation whose value is new stays in the
jaxpr (a constant written into the program as a new array would cost a copy
of it).

Only what can pay off is evaluated: the equations whose output has the
shape and dtype of an operand and reaches the run-time computation (through
reshapes and broadcasts at most), and the constant-only equations they
read. A ``select_n`` whose predicate is the same everywhere is its chosen
operand without evaluating the others (``pre + n`` above is never formed).

    rules = identity_rules(jaxpr, consts)      # evaluate's ``replace`` map
"""
from __future__ import annotations

import jax
import numpy as np
from jax.extend import core as jcore

LAYOUT = {"reshape", "broadcast_in_dim", "squeeze", "expand_dims", "transpose",
          "convert_element_type", "copy", "copy_p"}


def _is_var(a) -> bool:
    return not isinstance(a, jcore.Literal)


def _same_aval(a, b) -> bool:
    return tuple(a.aval.shape) == tuple(b.aval.shape) and a.aval.dtype == b.aval.dtype


def _bitwise_equal(a, b) -> bool:
    """Same shape, dtype and bits (NaN payloads and signed zeros included);
    a mismatch near the start is found without reading the rest."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    n = a.dtype.itemsize
    bits = np.dtype(f"u{n}") if n in (1, 2, 4, 8) else np.dtype(np.uint8)
    a, b = a.reshape(-1).view(bits), b.reshape(-1).view(bits)
    head = min(a.size, 4096)
    return bool(np.array_equal(a[:head], b[:head]) and np.array_equal(a, b))


def _uniform(p):
    """The single value of ``p`` if all its entries are equal, else None."""
    p = np.asarray(p).reshape(-1)
    if p.size == 0:
        return None
    if p.dtype == np.bool_:
        return True if p.all() else (False if not p.any() else None)
    return p[0] if np.array_equal(p, np.full_like(p, p[0])) else None


class _Values:
    """Concrete values of constant-only vars, computed on first use."""

    def __init__(self, jaxpr, consts, producer):
        self.env = dict(zip(jaxpr.constvars, consts))
        self.producer = producer

    def __call__(self, a):
        if not _is_var(a):
            return a.val
        if a not in self.env:
            from transforms.ir.trace import bind_eqn
            eqn = self.producer[a]
            with jax.ensure_compile_time_eval():   # concrete, also under a caller's trace
                outs = bind_eqn(eqn, [self(b) for b in eqn.invars])
            self.env.update(zip(eqn.outvars, outs))
        return self.env[a]


def identity_rules(jaxpr, consts) -> dict:
    """``evaluate``'s ``replace`` map: constant-only equations equal to an
    operand read that operand; constant-only equations no longer read are
    dropped (their outputs are never read)."""
    free = set(jaxpr.constvars)                 # vars that depend on no input
    producer = {}
    for eqn in jaxpr.eqns:
        if not eqn.effects and all(not _is_var(a) or a in free for a in eqn.invars):
            free.update(eqn.outvars)
            producer.update((o, eqn) for o in eqn.outvars)
    is_free = [not eqn.effects and all(o in free for o in eqn.outvars) for eqn in jaxpr.eqns]
    reaches = {v for v in jaxpr.outvars if _is_var(v) and v in free}
    for eqn, f in zip(jaxpr.eqns, is_free):
        if not f:
            reaches.update(a for a in eqn.invars if _is_var(a) and a in free)
    for eqn in reversed(jaxpr.eqns):            # back through reshapes and broadcasts
        if eqn.primitive.name in LAYOUT and any(o in reaches for o in eqn.outvars):
            reaches.update(a for a in eqn.invars if _is_var(a) and a in free)

    values = _Values(jaxpr, consts, producer)
    alias: dict = {}
    todo = [v for v in reaches if v in producer]
    while todo:
        out = todo.pop()
        eqn = producer[out]
        if out in alias or len(eqn.outvars) != 1 or not any(
                _is_var(a) and _same_aval(a, out) for a in eqn.invars):
            continue
        same = _identity_operand(eqn, values)
        if same is not None:
            alias[out] = same
            if same in producer:
                todo.append(same)      # an identity of an identity
    if not alias:
        return {}
    for v in list(alias):
        while alias[v] in alias:
            alias[v] = alias[alias[v]]
    return _rules(jaxpr, alias, is_free)


def _identity_operand(eqn, values):
    """The operand var whose value the equation's output equals, or None."""
    out = eqn.outvars[0]
    if eqn.primitive.name == "select_n":
        which = _uniform(values(eqn.invars[0]))
        if which is None:
            return None
        chosen = eqn.invars[1 + int(which)]
        return chosen if _is_var(chosen) and _same_aval(chosen, out) else None
    value = values(out)
    return next((a for a in eqn.invars if _is_var(a) and _same_aval(a, out)
                 and _bitwise_equal(values(a), value)), None)


def _rules(jaxpr, alias, is_free) -> dict:
    """Aliased equations read their operand; constant-only equations whose
    outputs nothing live reads are dropped."""
    live = {alias.get(v, v) for v in jaxpr.outvars if _is_var(v)}
    keep = [False] * len(jaxpr.eqns)
    for i in range(len(jaxpr.eqns) - 1, -1, -1):
        eqn = jaxpr.eqns[i]
        if not (is_free[i] and not any(o in live for o in eqn.outvars)):
            keep[i] = True
            if len(eqn.outvars) == 1 and eqn.outvars[0] in alias:
                live.add(alias[eqn.outvars[0]])
            else:
                live.update(a for a in eqn.invars if _is_var(a))
    rules = {}
    for i, eqn in enumerate(jaxpr.eqns):
        if not keep[i]:
            rules[i] = lambda read, eqn: [None] * len(eqn.outvars)
        elif len(eqn.outvars) == 1 and eqn.outvars[0] in alias:
            rules[i] = lambda read, eqn, src=alias[eqn.outvars[0]]: [read(src)]
    return rules
