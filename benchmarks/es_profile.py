"""Where ES-D-RTRL's time goes: per-phase milliseconds of one training
sequence on the lif-delta network, by ablation.

A sequence runs in windows of k steps (``brainscale/online_sequence.py``):
the forward pass step by step with the traces advanced, one VJP for the
window's learning signals, the neuron cotangents u_t, the stacked factors and
one contraction. Each row below runs the windows up to and including that
phase (later phases left out, their inputs summed so nothing is dropped as
dead code); the difference between rows is the phase's cost. The last row is
``learner.train_sequence`` itself (reset, sequence, SGD update). Times are
medians over interleaved repetitions.

    python benchmarks/es_profile.py --T 100 --B 32 --size 100 200 10
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import lif_delta as ld  # noqa: E402
from transforms.learning.signals import (linearized_cut, readout_signal, run_step,  # noqa: E402
                                         step_signals, weight_grads)

PHASES = ("forward", "+ trace update", "+ batched VJP (signals)", "+ neuron cotangents u",
          "+ stacked factors", "+ contraction")


def _total(*trees):
    return sum(jnp.sum(jnp.real(v)) for t in trees for v in jax.tree_util.tree_leaves(t))


def phase_fn(learner, graph, params, xs, ys, level):
    """A jitted ``(hidden, traces) -> scalar`` running the windows up to ``level``."""
    p = jax.tree_util.tree_leaves(params)
    algo = learner.algorithm
    T, B = xs.shape[:2]
    k = algo.window_for(T, B)
    q = T // k
    chunks = jax.tree.map(lambda v: v[:q * k].reshape((q, k) + v.shape[1:]), (xs, ys))
    mixing = [op.index for op in graph.trained_ops() if op.mixing]

    def window(carry, inp):
        h, tr = carry
        x, y = inp

        def forward(c, xt):
            hh, t = c
            xx = jax.tree_util.tree_leaves(xt)
            h_new, _, x_ops, y_ops = jax.vmap(lambda a, b: run_step(graph, p, a, b))(hh, xx)
            rec = (hh, t._replace(x={}), {i: y_ops[i] for i in mixing})
            if level == 0:
                return (h_new, t), rec

            def per_sample(fn, t1):
                def one(h1, xv, yo, xo, tr1):
                    return fn(tr1, linearized_cut(graph, p, h1, xv, yo), graph.view.split(h1),
                              yo, xo)
                return jax.vmap(one)(hh, xx, y_ops, x_ops, t1)
            return (h_new, algo.advance(graph, t, per_sample, x_ops)), rec

        (h_end, tr_end), (h_prev, tr_prev, held) = jax.lax.scan(forward, (h, tr), x)
        acc = _total(h_end, tr_end)
        if level >= 2:
            sig = step_signals(graph, learner.loss, p, h_prev, jax.tree_util.tree_leaves(x), y,
                               held=held)
            acc = acc + sig.loss + _total(sig.signal, sig.dy)
        if level >= 3:
            rsig = jax.vmap(lambda s: readout_signal(graph, p, s, graph.feedback))(sig.signal)
            us = jax.vmap(lambda t_, s, r: algo.neuron_cotangents(graph, t_, s, r))(
                tr_prev, sig.signal, rsig)
            acc = acc + _total(us)
        if level >= 4:
            X, Y = algo.window_factors(graph, tr.x, sig.x, sig.dy, us)
            acc = acc + _total(X, Y)
        if level >= 5:
            acc = acc + _total(weight_grads(graph, X, Y))
        return (h_end, tr_end), acc

    return jax.jit(lambda h, tr: jax.lax.scan(window, (h, tr), chunks)[1].sum())


def profile(T, B, size, window=None, readout_paths=False, reps=15, decay=0.99):
    """{phase: median ms per sequence} and the window used."""
    learner, state, xs, ys = ld.es_setup(T, B, size, window, readout_paths, decay)
    graph = learner.graph
    h0 = jax.tree_util.tree_leaves(state.hidden)
    calls = {name: (lambda f=phase_fn(learner, graph, state.params, xs, ys, lvl):
                    f(h0, state.traces)) for lvl, name in enumerate(PHASES)}
    calls["train_sequence"] = lambda: learner.train_sequence(state, xs, ys)[1]["loss"]
    for c in calls.values():
        jax.block_until_ready(c())
    times = {name: [] for name in calls}
    for _ in range(reps):
        for name, c in calls.items():
            t = time.perf_counter()
            jax.block_until_ready(c())
            times[name].append(time.perf_counter() - t)
    return {n: float(np.median(v)) * 1e3 for n, v in times.items()}, \
        learner.algorithm.window_for(T, B)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ld.add_network_args(ap)
    ap.add_argument("--window", type=int, default=None, help="steps per window (default: auto)")
    ap.add_argument("--readout-paths", action="store_true", help="the default learner's paths")
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    ms, k = profile(args.T, args.B, tuple(args.size), args.window, args.readout_paths, args.reps)
    print(f"ES-D-RTRL profile: lif-delta {args.size[0]}-{args.size[1]}-{args.size[1]}-"
          f"{args.size[2]}, B {args.B}, T {args.T}, window {k}, readout paths "
          f"{'on' if args.readout_paths else 'off'}, jax {jax.__version__} {jax.devices()[0]}")
    print("| phases run | ms per sequence | phase ms |\n|---|---|---|")
    prev = 0.0
    for name, v in ms.items():
        step = "" if name == "train_sequence" else f"{v - prev:.1f}"
        print(f"| {name} | {v:.1f} | {step} |")
        prev = v if name != "train_sequence" else prev
    return 0


if __name__ == "__main__":
    sys.exit(main())
