"""Canonicalise a flat step jaxpr before analysis.

Libraries that accept unbatched input often add a unit batch axis around a
layer and drop it at the end: flax's ``nnx.Conv`` on one ``(H, W, C)``
sample computes ``conv(x[None]) + bias`` with shape ``(1, H, W, C')`` and
then reshapes to ``(H, W, C')``. The weight op's output then has a shape
other than its neurons'. This pass computes such an elementwise equation
(``add``, ``sub``, ``mul``, ...) directly on the squeezed shape when its only
consumer is a reshape that just removes leading unit axes, so the squeeze
moves up to the weight op's output, where the analysis absorbs it::

    y = conv(x, W); z = add(y, b); h = reshape(z)      # y, z: (1, H, W, C)
 -> y = conv(x, W); z = add(reshape(y), reshape(b)); h = reshape(z)
"""
from __future__ import annotations

import jax.numpy as jnp
from jax.extend import core as jcore

_BINARY = {"add", "add_any", "sub", "mul", "div", "max", "min"}
_SQUEEZES = {"reshape", "squeeze"}


def _unit_prefix(shape, target) -> int:
    """k when ``shape == (1,) * k + target`` (k >= 1), else 0."""
    k = len(shape) - len(target)
    if k >= 1 and tuple(shape[k:]) == tuple(target) and all(d == 1 for d in shape[:k]):
        return k
    return 0


def squeeze_rules(jaxpr) -> dict:
    """``evaluate``'s ``replace`` map for the equations to compute squeezed."""
    users: dict = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for a in eqn.invars:
            if not isinstance(a, jcore.Literal):
                users.setdefault(a, []).append(i)
    outvars = {v for v in jaxpr.outvars if not isinstance(v, jcore.Literal)}
    rules = {}
    for i, eqn in enumerate(jaxpr.eqns):
        if eqn.primitive.name not in _BINARY or len(eqn.outvars) != 1:
            continue
        z = eqn.outvars[0]
        use = users.get(z, [])
        if z in outvars or len(use) != 1:
            continue
        nxt = jaxpr.eqns[use[0]]
        if nxt.primitive.name not in _SQUEEZES:
            continue
        k = _unit_prefix(z.aval.shape, nxt.outvars[0].aval.shape)
        if k:
            rules[i] = _squeezed(k)
    return rules


def _squeezed(k):
    def run(read, eqn):
        from transforms.ir.trace import bind_eqn
        keep = len(eqn.outvars[0].aval.shape) - k
        args = []
        for a in eqn.invars:
            v = read(a)
            if jnp.ndim(v) > keep:          # its extra leading axes are unit axes
                v = jnp.reshape(v, jnp.shape(v)[jnp.ndim(v) - keep:])
            args.append(v)
        return bind_eqn(eqn, args)
    return run
