"""One online learning step on the graph IR, shared by the trace algorithms.

Per time step t (batched over samples, parameters shared):

    g_t = d l_t/d theta |_{h_{t-1} fixed}  +  sum_g L_t^g . E^g_{t-1}

where L_t^g = d l_t / d h^g_{t-1} comes from one VJP through the *current*
step only (all spatial paths across layers within the step included), and
E^g_{t-1} ~ d h^g_{t-1} / d W is the eligibility trace of the algorithm
(D-RTRL, ES-D-RTRL). This is exact when E is exact (a feed-forward layer of
elementwise neurons), and it never misses a within-step path, whichever
variable the model derives its spikes from. The traces are then advanced
with the per-neuron Jacobians of the step with every mixing weight op cut:

    D_t  = d h_t / d h_{t-1}   (per group, K x K per neuron)
    Df_t = d h_t / d y_t       (per op and driven group, K per neuron)
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from transforms.errors import CompileError
from transforms.ir.graph import ELEMWISE, SPARSE, Graph
from transforms.ir.trace import bind_eqn, evaluate
from transforms.learning.loop_vjp import forward_mode_vjp

SymbolicZero = jax.custom_derivatives.SymbolicZero


class StepSignals(NamedTuple):
    loss: jax.Array          # scalar: batch mean of the per-sample losses
    losses: jax.Array        # (B,)
    hidden: list             # new hidden leaves, each (B, ...)
    out: object              # output pytree, leaves (B, ...)
    g_immediate: list        # d l / d params with h_{t-1} fixed; None for trained ops' weights
    signal: list             # d l / d h_{t-1}, per state slot (B, *neurons)
    x: dict                  # op index -> its input x_t (B, ...) (ones for a bias)
    y: dict                  # op index -> its output y_t (B, ...)
    dy: dict                 # op index -> d l / d y_t (B, ...)
    extra: list = []         # values of the ``extra`` vars asked for (B, ...)


def feedback_replace(graph: Graph, feedback) -> dict:
    """``evaluate`` replacements that keep each feedback op's forward value
    x @ W but send the cotangent of x through a fixed matrix B instead of W
    (random feedback, as in e-prop): y = sg(x) @ W + x @ B - sg(x @ B)."""
    rules = {}
    for k, B in (feedback or {}).items():
        op = graph.ops[k]
        eqn = graph.traced.eqns[op.core[-1]]
        if len(op.core) != 1 or set(eqn.invars) != {op.x_var, op.weff_var}:
            raise CompileError(f"feedback needs a single-equation x @ W op; {op.path} is "
                               f"computed by {len(op.core)} equations", path=op.path)

        def run(read, eqn, op=op, B=B):
            sub = lambda xv, wv: bind_eqn(eqn, [xv if v is op.x_var else wv for v in eqn.invars])[0]
            xv, wv = read(op.x_var), read(op.weff_var)
            fb = sub(xv, B)
            return [sub(jax.lax.stop_gradient(xv), wv) + fb - jax.lax.stop_gradient(fb)]
        rules[op.core[-1]] = run
    return rules


def run_step(graph: Graph, params, hidden, x, dys=None, extra=None, feedback=None, held=None):
    """Per-sample forward: new hidden leaves, output leaves, the x and y
    values of every trained op, keyed by op index (and the values of the
    ``extra`` vars). With ``dys`` ({op index: dy}), each trained op's output
    is offset by dy, so that a VJP in dy gives
    d l/d y_t (the weights are not among the VJP's inputs). No
    stop-gradient: a gradient taken through the learner (meta-learning)
    sees every path.
    ``feedback`` ({op index: B}) routes the backward pass of those ops' x
    through B. ``held`` ({op index: y}) gives mixing ops' outputs computed
    before: they are not recomputed, only differentiated (``held_output``)."""
    t = graph.traced
    ops = graph.trained_ops()
    rec = ([op.x_var for op in ops if op.x_var is not None] + [op.y_var for op in ops]
           + [v for op in ops for v in op.inputs] + list(extra or ()))
    wrap = None
    if dys is not None:     # the trained ops' weights are constants of the caller's VJP
        wrap = {op.y_var: (lambda v, dy=dys[op.index]: v + dy) for op in ops}
    replace = dict.fromkeys(graph.loops, forward_mode_vjp)
    replace.update(feedback_replace(graph, feedback))
    for k, y in (held or {}).items():
        replace[graph.ops[k].core[-1]] = held_replacement(graph, graph.ops[k], y)
    outs, env = evaluate(t.jaxpr, t.consts, list(params) + list(hidden) + list(x), record=rec,
                         wrap=wrap, replace=replace or None)
    dtype = outs[0].dtype if outs else jnp.float32
    xs = {op.index: op_input(graph, op, params, env) if op.x_var is not None
          else jnp.ones((), dtype) for op in ops}
    ys = {op.index: env[op.y_var] for op in ops}
    if extra is not None:
        return outs[:t.n_hidden], outs[t.n_hidden:], xs, ys, [env[v] for v in extra]
    return outs[:t.n_hidden], outs[t.n_hidden:], xs, ys


def held_replacement(graph: Graph, op, y):
    """``evaluate`` replacement of a mixing op's output by ``y``, computed
    earlier, keeping the op's derivative (``held_output``). A dense product
    whose input is a concatenation along the contracted axis, [x_1, x_2] @ W,
    is differentiated part by part, x_i @ W_i, so that a part with no
    tangent (e.g. the network's input) costs no product in a VJP."""
    split = _concat_split(graph, op)
    if split is None:
        return lambda read, eqn: [held_output(graph, op, None)((read(op.x_var),),
                                                                read(op.weff_var), y)]
    cat = split[0]
    return lambda read, _: [held_output(graph, op, split)(
        tuple(read(v) for v in cat.invars), read(op.weff_var), y)]


def _concat_split(graph: Graph, op):
    """(concatenate eqn, dot eqn, W axis) from the dense rule's ``x_parts``."""
    if op.x_parts is None:
        return None
    eqns = graph.traced.eqns
    return eqns[op.x_parts[0]], eqns[op.core[0]], op.x_parts[1]


def held_output(graph: Graph, op, split):
    """``f(parts, W_eff, y) = y`` for y = core(concat(parts), W_eff) computed
    earlier, with core's derivative: core is bilinear for mixing ops, so the
    tangent is core(dx, W_eff) + core(x, dW_eff) and the product itself is
    never redone. With ``split`` (``_concat_split``), dx @ W is summed over
    the runs of consecutive parts that have a tangent, one product each."""
    def whole(parts):
        return parts[0] if split is None else jnp.concatenate(parts, split[0].params["dimension"])

    def by_parts(parts, dparts, w):
        if split is None:
            return [] if isinstance(dparts[0], SymbolicZero) else [graph.core(op, dparts[0], w)]
        cat, dot, axis = split
        d = cat.params["dimension"]
        out, start, run = [], 0, []       # run: consecutive parts with a tangent, one product
        for x, dx in list(zip(parts, dparts)) + [(None, None)]:
            if x is not None and not isinstance(dx, SymbolicZero):
                run.append((start, dx))
            elif run:
                lo, hi = run[0][0], start
                dxs = [t for _, t in run]
                dx_run = dxs[0] if len(dxs) == 1 else jnp.concatenate(dxs, d)
                w_run = jax.lax.slice_in_dim(w, lo, hi, axis=axis)
                out.append(bind_eqn(dot, [dx_run if v is op.x_var else w_run
                                          for v in dot.invars])[0])
                run = []
            start += 0 if x is None else x.shape[d]
        return out

    @jax.custom_jvp
    def held(parts, w, y):
        return y

    def jvp(primals, tangents):
        parts, w, y = primals
        dparts, dw, _ = tangents      # y's own tangent is core's, given by dx and dw
        terms = by_parts(parts, dparts, w)
        if not isinstance(dw, SymbolicZero):
            terms.append(graph.core(op, whole(parts), dw))
        return y, sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y)

    held.defjvp(jvp, symbolic_zeros=True)
    return held


def op_input(graph: Graph, op, params, env):
    """The x the traces see: the op's input, or for an elementwise op its
    slope in W_eff (``Graph.x_eff``)."""
    if op.kind != ELEMWISE:
        return env[op.x_var]
    return graph.x_eff(op, [env[v] for v in op.inputs], graph.weff(op, params[op.param]))


def step_signals(graph: Graph, loss_fn: Callable, params, hidden, x, target,
                 extra=(), skip=frozenset(), feedback=None, held=None) -> StepSignals:
    """Forward over the batch plus one VJP for the learning signal
    d l_t / d h_{t-1}, the output cotangents d l_t / d y_t of the trained
    ops, and the immediate gradient of every other parameter (except the
    ``skip`` ones, e.g. weights under a local rule); ``extra`` vars are
    recorded along. With ``held`` ({op index: y}, leaves (k, B, ...)), the
    inputs are k independent steps (a window: leaves (k, B, ...)) whose
    mixing ops' outputs were computed by the forward pass; one VJP of
    sum_t mean_b l_t gives every step's signals at once (batched products
    of k B rows), ``loss`` is that sum and ``losses`` (k, B)."""
    t = graph.traced
    ops = graph.trained_ops()
    lead = 1 if held is None else 2
    batch = jax.tree_util.tree_leaves(hidden)[0].shape[:lead]
    dys0 = {op.index: jnp.zeros(batch + op.y_shape, op.y_var.aval.dtype) for op in ops}
    trained = {op.param for op in ops}          # their gradient comes from dy, not this VJP
    free = [i for i in range(len(params)) if i not in trained and i not in skip]

    def batch_loss(free_params, hidden, dys):
        full = list(params)
        for i, p in zip(free, free_params):
            full[i] = p

        def one(h, xx, y, dy, hy):
            h_new, out, xs, ys, ex = run_step(graph, full, h, xx, dy, list(extra), feedback, hy)
            out = jax.tree_util.tree_unflatten(t.out_tree, out)
            return loss_fn(out, y), (h_new, out, xs, ys, ex)
        fn = jax.vmap(one)
        if held is not None:
            fn = jax.vmap(fn)
        ls, aux = fn(hidden, x, target, dys, held)
        return jnp.sum(jnp.mean(ls, axis=-1)), (ls, aux)

    loss, vjp, (ls, (h_new, out, xs, ys, ex)) = jax.vjp(
        batch_loss, [params[i] for i in free], list(hidden), dys0, has_aux=True)
    g_free, signal, dy = vjp(jnp.ones_like(loss))
    signal = graph.view.cotangent_slots(signal, lead=lead)
    g_params = [None] * len(params)
    for i, g in zip(free, g_free):
        g_params[i] = g
    return StepSignals(loss, ls, h_new, out, g_params, signal, xs, ys, dy, ex)


ROW_UNROLL = 8
"""A sparse op's gradient sums this many rows in one fused pass over its
synapses; more rows take one such pass per group of this many."""


def weight_grads(graph: Graph, xs, cots):
    """Per op index k of ``xs``: sum_b d<cot_b, core(x_b, W)>/dW for stacked
    factors xs[k] (N, *x) and cots[k] (N, *y), one contraction (a matmul for
    dense ops). A sparse op's gradient is a sum of per-row products
    x_b[pre] * cot_b[post], formed a group of rows at a time into one array
    of the weight's size: stacked, it would first write out every row's
    gathers (N times the synapse count, twice)."""
    out = {}
    for k, x in xs.items():
        op, cot = graph.ops[k], cots[k]
        if op.kind == SPARSE:
            out[k] = _sparse_grad(graph, op, x, cot)
            continue
        _, pull = jax.vjp(lambda w, op=op, x=x: jax.vmap(lambda xi: graph.core(op, xi, w))(x),
                          jnp.zeros(op.weff_shape, cot.dtype))
        out[k] = pull(cot)[0]
    return out


def _sparse_grad(graph: Graph, op, x, cot):
    """sum_b d<cot_b, core(x_b, W)>/dW, ``ROW_UNROLL`` rows per pass. The
    rows are formed before the pass (an optimisation barrier): XLA would
    otherwise fuse the computation of each neuron's cotangent into the pass
    and redo it once per synapse."""
    zero = jnp.zeros(op.weff_shape, cot.dtype)

    def rows(xk, ck):
        def row(xi, ci):
            _, pull = jax.vjp(lambda w: graph.core(op, xi, w), zero)
            return pull(ci)[0]
        return sum((row(xk[b], ck[b]) for b in range(1, xk.shape[0])), row(xk[0], ck[0]))

    x, cot = jax.lax.optimization_barrier((x, cot))
    n = x.shape[0]
    if n <= ROW_UNROLL:
        return rows(x, cot)
    pad = -n % ROW_UNROLL          # zero rows add nothing
    group = lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(
        (-1, ROW_UNROLL) + a.shape[1:])
    return jax.lax.scan(lambda acc, xc: (acc + rows(*xc), None), zero,
                        (group(x), group(cot)))[0]


def linearized_cut(graph: Graph, params, hidden, x, ys):
    """Per sample: the step with every mixing weight op cut (its output held
    at ``ys`` plus an offset dy) and every other equation that mixes neurons
    cut (``graph.cuts``: its output held), linearised at (h_{t-1}, dy = 0)
    in the state slots. Returns ``lin(dh, ddy) -> (dh_t, dx_o)`` (dh over
    slots, ddy keyed by trained op index; dx_o over ``graph.readout_paths``'
    readout inputs): ``lin(e_k, 0)`` gives columns of D_t, ``lin(0, 1_op)`` Df_t."""
    t = graph.traced
    ops = graph.trained_ops()
    view = graph.view
    extra = [graph.ops[p.readout_op].x_var for p in graph.readout_paths]
    replace = {i: _held(held) for i, held in graph.cuts.items()}

    def cut(h_slots, dys):
        rep = dict(replace)
        for op in ops:
            y, dy = ys[op.index], dys[op.index]
            if op.mixing:
                rep[op.core[-1]] = lambda read, eqn, y=y, dy=dy: [y + dy]
            else:
                rep[op.core[-1]] = lambda read, eqn, dy=dy: [
                    bind_eqn(eqn, [read(v) for v in eqn.invars])[0] + dy]
        h = view.join(h_slots, hidden)
        outs, rec = evaluate(t.jaxpr, t.consts, list(params) + list(h) + list(x),
                             replace=rep, record=extra)
        return view.split(outs[:t.n_hidden]), [rec[v] for v in extra]

    dys0 = {op.index: jnp.zeros(op.y_shape, ys[op.index].dtype) for op in ops}
    return jax.linearize(cut, view.split(hidden), dys0)[1]


def _held(operands):
    """A cut equation: its value with no derivative through the ``operands``
    held (None: through any)."""
    def run(read, eqn):
        if operands is None:
            return [jax.lax.stop_gradient(o)
                    for o in bind_eqn(eqn, [read(v) for v in eqn.invars])]
        return bind_eqn(eqn, [jax.lax.stop_gradient(read(v)) if k in operands else read(v)
                              for k, v in enumerate(eqn.invars)])
    return run


def op_rounds(graph: Graph) -> list[list[int]]:
    """Trained op indices grouped so that the ops of one round drive disjoint
    hidden groups: one JVP of the cut step then serves every op of the round."""
    rounds: list[tuple[list[int], set]] = []
    for op in graph.trained_ops():
        for members, used in rounds:
            if not used & set(op.groups):
                members.append(op.index)
                used.update(op.groups)
                break
        else:
            rounds.append(([op.index], set(op.groups)))
    return [members for members, _ in rounds]


def op_slots(graph: Graph, op) -> list[int]:
    """State slots of the groups an op drives, in group order."""
    return [j for g in op.groups for j in graph.groups[g].slots]


def jacobians(graph: Graph, lin, hidden, ys):
    """Per sample: D as {(j, j'): dh_j/dh_j'} for leaves of one driven group,
    Df per trained op index as a list over ``op_slots`` of dh_j/dy, and for each
    readout path p the readout input's Jacobians Jh[p] = {j': dx_o/dh_j'} and
    Jy[p] = dx_o/dy_k."""
    ops = graph.trained_ops()
    pos = {j: k for g in graph.groups for k, j in enumerate(g.slots)}
    needed = sorted({g for op in ops for g in op.groups})
    kmax = max((graph.groups[g].k for g in needed), default=0)
    zeros_h = [jnp.zeros_like(h) for h in hidden]
    zeros_y = {op.index: jnp.zeros(op.y_shape, ys[op.index].dtype) for op in ops}
    cols = [lin([jnp.ones_like(h) if pos[j] == k else z
                 for j, (h, z) in enumerate(zip(hidden, zeros_h))], zeros_y)
            for k in range(kmax)]
    D = {(j, jj): cols[pos[jj]][0][j]
         for g in needed for j in graph.groups[g].slots for jj in graph.groups[g].slots}
    paths = graph.readout_paths
    Jh = [{jj: cols[pos[jj]][1][n] for jj in graph.groups[p.group].slots}
          for n, p in enumerate(paths)]
    Df, Jy = {}, [None] * len(paths)
    for members in op_rounds(graph):
        out, extra = lin(zeros_h, {k: jnp.ones_like(z) if k in members else z
                                   for k, z in zeros_y.items()})
        for k in members:
            Df[k] = [out[j] for j in op_slots(graph, graph.ops[k])]
        for n, p in enumerate(paths):
            if p.op in members:
                Jy[n] = extra[n]
    return D, Df, Jh, Jy


def readout_signal(graph: Graph, params, signal, feedback=None, weights=None):
    """Per readout path: c core_o^T(dl/dr_{t-1}), batched (B, *x_o) (its
    part x_slice of x_o where given); through the op's feedback matrix
    instead of its weight where one is given. A path through a spiking layer
    (``through``) pulls back sum_j dl/dh_j o weights[n][j] over the layer's
    state slots j, or on into a readout (``via``) that path's signal times
    weights[n][0] (``weights``: the algorithm's ``path_weights``)."""
    out = []
    for n, p in enumerate(graph.readout_paths):
        o = graph.ops[p.readout_op]
        w = (feedback or {}).get(o.index)
        w = graph.weff(o, params[o.param]) if w is None else w
        slots = graph.groups[p.readout_group].slots
        if p.via is not None:
            L = out[p.via] * weights[n][0]
        elif p.through:
            L = sum(signal[j] * c for j, c in zip(slots, weights[n]))
        elif p.mix is not None:         # one mode of a multi-state linear readout
            L = sum(signal[j] * v for j, v in p.mix)
        else:
            L = signal[slots[0]]
        x0 = jnp.zeros((L.shape[0],) + o.x_shape, L.dtype)
        _, pull = jax.vjp(lambda xx: jax.vmap(lambda xi: graph.core(o, xi, w))(xx), x0)
        g = p.coeff * pull(L)[0]
        out.append(g if p.x_slice is None else g[:, p.x_slice[0]:p.x_slice[1]])
    return out


def param_grads(graph: Graph, params, g_immediate, g_weff):
    """Total gradient per parameter leaf: the immediate part plus each trained
    op's W_eff gradient ({op index: dL/dW_eff}) pulled back through the op's
    parameter chain."""
    grads = [g if g is not None else jnp.zeros_like(p) for g, p in zip(g_immediate, params)]
    for k, gw in g_weff.items():
        op = graph.ops[k]
        weff, pull = jax.vjp(lambda w, op=op: graph.weff(op, w), params[op.param])
        grads[op.param] = grads[op.param] + pull(gw.astype(weff.dtype))[0].astype(
            grads[op.param].dtype)
    return grads
