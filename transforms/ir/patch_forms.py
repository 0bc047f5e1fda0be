"""An op's patch form: y = core(x, W_eff) as patches of x times a matrix.

    y[n, o] = sum_j P(x)[n, j] W2[j, o]

``o`` runs over the axes of y along which the weight varies (a dense op's
output units, a convolution's output channels), ``n`` over the positions
that share it (the free axes of a dense op's input, a convolution's output
pixels), ``j`` over the patch (the contracted input axes, a convolution's
receptive field). The derivative of neuron (n, o) in W is the patch
P(x)[n, :] on column o, so D-RTRL keeps one trace entry per neuron and
patch element, (*y, B, *J), whether or not a weight element is shared by
several neurons. One rule per op kind, in ``PATCH_RULES``; an op without
one (elementwise, bias, sparse) keeps its trace in W_eff's shape.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from transforms.ir.graph import CONV, DENSE


@dataclasses.dataclass(frozen=True)
class PatchForm:
    """``patches(x)``: batched x (B, *x) -> (B, *yshape with 1 on ``w_axes``,
    *jshape); ``to_weff(g)``: g (*yshape[w_axes], *jshape) -> W_eff's layout.
    ``yshape`` is y as the op's first core equation produces it (the rest of
    the core only reshapes it: same size as y)."""
    yshape: tuple
    jshape: tuple
    w_axes: tuple
    patches: Callable
    to_weff: Callable

    @property
    def positions(self) -> int:
        """Neurons sharing each weight element."""
        return math.prod(self.yshape) // math.prod(self.yshape[a] for a in self.w_axes)


def _dense(graph, op):
    eqn = graph.traced.eqns[op.core[0]]
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    if lb or rb:
        return None
    x_lhs = eqn.invars[0] is op.x_var
    xc, wc = (lc, rc) if x_lhs else (rc, lc)
    nx, nw = len(op.x_shape), len(op.weff_shape)
    xf = [d for d in range(nx) if d not in xc]
    wf = [d for d in range(nw) if d not in wc]
    pairs = sorted(zip(wc, xc))                     # patch axes in W's order
    x_shape = op.x_shape
    yshape = tuple(eqn.outvars[0].aval.shape)
    w_axes = tuple(range(len(xf), len(xf) + len(wf))) if x_lhs else tuple(range(len(wf)))
    keep = [x_shape[d] if a not in w_axes else 1 for a, d in
            zip(range(len(yshape)), _y_sources(xf, wf, x_lhs))]
    jshape = tuple(x_shape[xd] for _, xd in pairs)

    def patches(x):
        xt = jnp.transpose(x, [0] + [1 + d for d in xf] + [1 + xd for _, xd in pairs])
        return xt.reshape((x.shape[0],) + tuple(keep) + jshape)

    where = {d: k for k, d in enumerate(wf)}
    where.update({wd: len(wf) + m for m, (wd, _) in enumerate(pairs)})
    perm = [where[d] for d in range(nw)]
    return PatchForm(yshape, jshape, w_axes, patches, lambda g: jnp.transpose(g, perm))


def _y_sources(xf, wf, x_lhs):
    """For each axis of a dot_general's output: the input axis it comes from
    (x free axes and W free axes, in the output's order)."""
    return list(xf) + list(wf) if x_lhs else list(wf) + list(xf)


def _conv(graph, op):
    eqn = graph.traced.eqns[op.core[0]]
    p = eqn.params
    if p["feature_group_count"] != 1 or p["batch_group_count"] != 1:
        return None
    dn = p["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn
    k_shape = op.weff_shape
    filt = tuple(k_shape[d] for d in rhs_spec[2:])
    yshape = tuple(eqn.outvars[0].aval.shape)
    feat = out_spec[1]
    J = k_shape[rhs_spec[1]] * math.prod(filt)

    def patches(x):
        def one(xb):
            P = lax.conv_general_dilated_patches(
                xb, filt, p["window_strides"], p["padding"], p["lhs_dilation"],
                p["rhs_dilation"], dn, precision=p["precision"])
            return jnp.expand_dims(jnp.moveaxis(P, feat, -1), feat)
        return jax.vmap(one)(x)

    order = (rhs_spec[1],) + tuple(rhs_spec[2:]) + (rhs_spec[0],)   # (Cin, *filter, Cout)
    inverse = tuple(int(i) for i in np.argsort(order))

    def to_weff(g):                                  # g (Cout, J)
        w2 = g.T.reshape((k_shape[rhs_spec[1]],) + filt + (k_shape[rhs_spec[0]],))
        return jnp.transpose(w2, inverse)
    return PatchForm(yshape, (J,), (feat,), patches, to_weff)


PATCH_RULES = {DENSE: _dense, CONV: _conv}


def patch_form(graph, op) -> PatchForm | None:
    """The op's patch form, or None where its kind has no rule or the rule
    does not apply (a batched dot_general, a grouped convolution)."""
    rule = PATCH_RULES.get(op.kind)
    return None if rule is None else rule(graph, op)
