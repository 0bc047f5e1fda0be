"""One zoo entry: a single-sample step function written the way users of
another library write it, plus what a coverage run needs to know about it.

``init(rng, x) -> (params, hidden)`` and ``apply(params, hidden, x) ->
(hidden, out)`` act on ONE sample (no batch axis); ``out`` is ``(n_out,)``
logits. ``spike_fraction`` is the helper that checks an entry's neurons
actually spike on random inputs (it records the outputs of every
``jax.custom_jvp`` call of the step that are 0/1-valued, i.e. the
surrogate spikes, including those inside scan / while / cond bodies).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal


@dataclasses.dataclass(frozen=True, kw_only=True)
class Entry:
    name: str               # e.g. "snntorch.Leaky"
    style: str              # "snntorch" | "norse" | "spyx" | "brainpy" | "paper"
    init: Callable          # init(rng, x) -> (params, hidden); x is ONE sample (no batch axis)
    apply: Callable         # apply(params, hidden, x) -> (new_hidden, out); ONE sample, pure JAX
    n_in: int               # per-sample input is (n_in,) float, or give in_shape
    in_shape: tuple = None  # overrides (n_in,) e.g. for conv (H, W, C)
    n_out: int = 3          # out is logits (n_out,) scored with softmax cross-entropy
    feedforward: bool       # ONE feed-forward layer of neurons, read out without state or by one
    #                         fixed-decay leaky integrator: D-RTRL exact
    has_while: bool = False  # step contains lax.while_loop
    note: str = ""          # one line: what is special (the quirk it tests)

    @property
    def shape(self) -> tuple:
        """Per-sample input shape."""
        return tuple(self.in_shape) if self.in_shape is not None else (self.n_in,)


# -- spike-rate check ------------------------------------------------------------------

def _is_spike(a) -> bool:
    a = np.asarray(a)
    if a.size == 0 or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        return False
    return bool(np.all((a == 0) | (a == 1)))


def _eval(jaxpr, consts, args, record):
    """Evaluate a jaxpr eagerly, recording 0/1 outputs of custom_jvp calls;
    loop primitives are run step by step so their bodies are recorded too."""
    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for v, a in zip(jaxpr.constvars, consts):
        env[v] = a
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name, prm = eqn.primitive.name, eqn.params
        if name == "custom_jvp_call":
            cj = prm["call_jaxpr"]
            outs = _eval(cj.jaxpr, cj.consts, ins, record)
            record.extend(o for o in outs if _is_spike(o))
        elif name in ("pjit", "jit", "closed_call", "core_call", "remat", "checkpoint",
                      "custom_vjp_call"):
            cj = prm.get("jaxpr") or prm.get("call_jaxpr") or prm.get("fun_jaxpr")
            if hasattr(cj, "jaxpr"):
                outs = _eval(cj.jaxpr, cj.consts, ins, record)
            else:
                outs = _eval(cj, (), ins, record)
        elif name == "scan":
            outs = _scan(prm, ins, record)
        elif name == "while":
            outs = _while(prm, ins, record)
        elif name == "cond":
            idx = int(np.asarray(ins[0]))
            br = prm["branches"][idx]
            outs = _eval(br.jaxpr, br.consts, ins[1:], record)
        else:
            outs = eqn.primitive.bind(*ins, **prm)
            if not eqn.primitive.multiple_results:
                outs = [outs]
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


def _scan(prm, ins, record):
    body, nc, ncar = prm["jaxpr"], prm["num_consts"], prm["num_carry"]
    consts, carry, xs = ins[:nc], list(ins[nc:nc + ncar]), ins[nc + ncar:]
    ys = []
    order = range(prm["length"])
    for i in (reversed(order) if prm["reverse"] else order):
        outs = _eval(body.jaxpr, body.consts, consts + carry + [x[i] for x in xs], record)
        carry, y = list(outs[:ncar]), outs[ncar:]
        ys.append(y)
    if prm["reverse"]:
        ys = ys[::-1]
    n_y = len(body.jaxpr.outvars) - ncar
    stacked = [jnp.stack([y[k] for y in ys]) for k in range(n_y)] if ys else []
    return carry + stacked


def _while(prm, ins, record):
    cj, bj = prm["cond_jaxpr"], prm["body_jaxpr"]
    nc, nb = prm["cond_nconsts"], prm["body_nconsts"]
    cconsts, bconsts, carry = ins[:nc], ins[nc:nc + nb], list(ins[nc + nb:])
    while bool(np.asarray(_eval(cj.jaxpr, cj.consts, cconsts + carry, record)[0])):
        carry = list(_eval(bj.jaxpr, bj.consts, bconsts + carry, record))
    return carry


def spike_fraction(entry: Entry, T: int = 20, B: int = 4, seed: int = 0) -> float:
    """Mean of all surrogate-spike outputs over a T-step run on uniform [0, 1]
    inputs (per sample, batch run one sample at a time); nan if none found."""
    key = jax.random.PRNGKey(seed)
    xs = jax.random.uniform(key, (T, B) + entry.shape, dtype=jnp.zeros(()).dtype)
    params, h0 = entry.init(jax.random.PRNGKey(0), xs[0, 0])
    closed = jax.make_jaxpr(entry.apply)(params, h0, xs[0, 0])
    n_h = len(jax.tree.leaves(h0))
    tree_h = jax.tree.structure(h0)
    total, count = 0.0, 0
    for b in range(B):
        h = h0
        for t in range(T):
            rec = []
            flat = jax.tree.leaves(params) + jax.tree.leaves(h) + jax.tree.leaves(xs[t, b])
            outs = _eval(closed.jaxpr, closed.consts, flat, rec)
            h = jax.tree.unflatten(tree_h, outs[:n_h])
            for r in rec:
                total += float(np.sum(np.asarray(r)))
                count += int(np.size(r))
    return total / count if count else float("nan")
