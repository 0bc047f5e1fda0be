"""``print(graph)``: what the compiler understood about a step, as tables."""
from __future__ import annotations

from transforms.ir.patch_forms import patch_form


def format_graph(graph) -> str:
    """The graph as text: inputs, outputs, hidden groups, state axes, weight
    ops, readout paths, approximations and the learning state per sample."""
    t = graph.traced
    lines = ["BrainScale graph", "",
             f"inputs: {', '.join(f'{p} {_shape(v)}' for p, v in zip(t.x_paths, t.x_vars))}",
             f"outputs: {', '.join(f'{p} {_shape(v)}' for p, v in zip(t.out_paths, t.out_vars))}",
             "", "hidden groups (coupled within each neuron; K states per neuron):"]
    rows = [("group", "neurons", "K", "states", "driven by")]
    for g in graph.groups:
        rows.append((f"G{g.index}", "x".join(map(str, g.shape)) or "1", str(g.k),
                     ", ".join(g.paths), ", ".join(f"W{o}" for o in g.ops) or "-"))
    lines += _table(rows)
    if any(not l.plain for l in graph.view.layouts):
        lines += ["", "state axes (per neuron, in the Jacobian block):"]
        for j, lay in enumerate(graph.view.layouts):
            if not lay.differentiable:
                lines.append(f"  {t.hidden_paths[j]}: integer, no gradient")
            elif not lay.plain:
                chunks = dict(lay.chunked)
                origin = [a for a in range(len(lay.shape)) for _ in range(2 if a in chunks else 1)]
                what = [f"axis {a}: {k} chunks of {lay.shape[a] // k} neurons"
                        for a, k in lay.chunked]
                what += [f"axis {origin[e]} ({lay.expanded_shape[e]} states)"
                         for e in lay.state_axes if origin[e] not in chunks]
                what += ["real and imaginary part"] if lay.complex else []
                lines.append(f"  {t.hidden_paths[j]}: {', '.join(what)}")
    lines += ["", "weight ops:"]
    rows = [("op", "param", "kind", "W", "x (pre)", "y", "drives", "at")]
    for op in graph.ops:
        rows.append((f"W{op.index}", op.path, op.kind, _dims(op.w_shape),
                     f"{_dims(op.x_shape)} ({', '.join(op.pre) or 'const 1'})",
                     _dims(op.y_shape),
                     ", ".join(f"G{g}" for g in op.groups) or "output only (exact gradient)",
                     op.source))
    lines += _table(rows)
    if graph.readout_paths:
        lines += ["", "readout paths (filtered traces carry the loss through leaky readouts):"]
        lines += [f"  {p.describe(graph)}" for p in graph.readout_paths]
    if graph.approximations:
        lines += ["", "approximations (paths between neurons the online traces cut; "
                  "BPTT keeps them):"]
        lines += [f"  {a}" for a in graph.approximations]
    mem = graph.memory()
    lines += ["", "learning state per sample (floats): "
              f"BPTT {mem['bptt_per_step']} x T, D-RTRL {mem['d_rtrl']}, "
              f"ES-D-RTRL {mem['es_d_rtrl']}"]
    no_d = [f"W{op.index}" for op in graph.trained_ops()
            if not op.one_post and patch_form(graph, op) is None]
    if no_d:
        lines.append(f"D-RTRL unavailable for {', '.join(no_d)} (weights drive several "
                     "neurons each); use es_d_rtrl or bptt")
    return "\n".join(lines)


def _shape(v):
    return _dims(tuple(v.aval.shape))


def _dims(shape):
    return "(" + ", ".join(map(str, shape)) + ")"


def _table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    out.insert(1, "  " + "  ".join("-" * w for w in widths))
    return out
