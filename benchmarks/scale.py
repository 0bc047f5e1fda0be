"""Online learning at scale: a recurrent SNN of 100,000 LIF neurons with 10
million sparse synapses, trained by ES-D-RTRL one time step at a time.

Connectivity has fixed in-degree (``--fan-in`` recurrent synapses per neuron,
``--fan-in-input`` from the Poisson input), stored sparsely and applied by
``segment_sum(W * s[pre], post)``, which the compiler recognises as a weight
op. Reported: synapse count, time per online step (forward, traces, Adam
update of every weight), peak RSS and XLA temp memory of the step, and BPTT's
compiled temp memory for growing T until it no longer fits in ``--mem-limit``
GiB, extrapolated linearly beyond (and said so).

    python benchmarks/scale.py --out bench_out/scale [--neurons 100000 --fan-in 100]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import brainscale as bs  # noqa: E402
from common import Progress, peak_rss_mib  # noqa: E402
from brainscale.nn.surrogate import SuperSpike  # noqa: E402

spike = SuperSpike(beta=10.0)


def build(n, fan_in, n_in, fan_in_input, n_out, seed=0):
    rng = np.random.default_rng(seed)
    post_rec = np.repeat(np.arange(n, dtype=np.int32), fan_in)
    pre_rec = rng.integers(0, n, size=n * fan_in, dtype=np.int32)
    post_in = np.repeat(np.arange(n, dtype=np.int32), fan_in_input)
    pre_in = rng.integers(0, n_in, size=n * fan_in_input, dtype=np.int32)
    pre_rec, post_rec, pre_in, post_in = map(jnp.asarray, (pre_rec, post_rec, pre_in, post_in))

    def init(key, x):
        k = jax.random.split(key, 3)
        params = {"w_in": jax.random.normal(k[0], (n * fan_in_input,)) * 2.0 / np.sqrt(fan_in_input),
                  "w_rec": jax.random.normal(k[1], (n * fan_in,)) * 0.5 / np.sqrt(fan_in),
                  "b": jnp.zeros(n),
                  "w_out": jax.random.normal(k[2], (n, n_out)) / np.sqrt(n)}
        return params, {"v": jnp.zeros(n), "s": jnp.zeros(n), "r": jnp.zeros(n_out)}

    def apply(p, h, x):
        cur = (jax.ops.segment_sum(p["w_in"] * x[pre_in], post_in, num_segments=n)
               + jax.ops.segment_sum(p["w_rec"] * h["s"][pre_rec], post_rec, num_segments=n)
               + p["b"])
        v = 0.95 * h["v"] + cur
        s = spike(v - 1.0)
        r = 0.9 * h["r"] + s @ p["w_out"]
        return {"v": v - s, "s": s, "r": r}, r
    return bs.StepModel(init, apply), int(pre_rec.shape[0] + pre_in.shape[0])


def data(T, B, n_in, n_out, seed=1):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    xs = jax.random.bernoulli(k1, 0.05, (T, B, n_in)).astype(jnp.float32)
    ys = jnp.broadcast_to(jax.random.randint(k2, (B,), 0, n_out), (T, B))
    return xs, ys


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/scale")
    ap.add_argument("--neurons", type=int, default=100_000)
    ap.add_argument("--fan-in", type=int, default=100)
    ap.add_argument("--fan-in-input", type=int, default=10)
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--outputs", type=int, default=10)
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50, help="online steps timed")
    ap.add_argument("--bptt-T", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    ap.add_argument("--mem-limit", type=float, default=20.0, help="GiB available to BPTT")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model, n_syn = build(args.neurons, args.fan_in, args.inputs, args.fan_in_input, args.outputs)
    xs, ys = data(args.steps, args.B, args.inputs, args.outputs)
    progress = Progress(1 + len(args.bptt_T))
    i = progress.start(f"es_d_rtrl online, {args.neurons:,} neurons, {n_syn:,} synapses, "
                       f"{args.steps} steps")
    t0 = time.time()
    learner = bs.online(model, algorithm="es_d_rtrl", optimizer=optax.adam(1e-3), decay=0.9)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    kinds = sorted({op.kind for op in learner.graph.ops})
    state, _, m = learner.step(state, xs[0], ys[0])
    jax.block_until_ready(m["loss"])
    compile_s = time.time() - t0
    times, losses = [], []
    for t in range(1, args.steps):
        t1 = time.time()
        state, _, m = learner.step(state, xs[t], ys[t])
        jax.block_until_ready(m["loss"])
        times.append(time.time() - t1)
        losses.append(float(m["loss"]))
    step_temp = learner.step.lower(state, xs[0], ys[0]).compile().memory_analysis().temp_size_in_bytes
    rss = peak_rss_mib() / 1024
    rate = float(jnp.mean(state.hidden["s"]))
    result = dict(neurons=args.neurons, synapses=n_syn, B=args.B, op_kinds=kinds,
                  compile_s=compile_s, step_median_s=float(np.median(times)),
                  step_min_s=float(np.min(times)), steps=args.steps, peak_rss_GiB=rss,
                  step_xla_temp_MiB=step_temp / 2 ** 20, last_step_spike_rate=rate,
                  loss_first=losses[0], loss_last=losses[-1], device=str(jax.devices()[0]))
    progress.done(i, f"{result['step_median_s']:.3f} s/step, first step {compile_s:.1f} s, "
                  f"temp {result['step_xla_temp_MiB']:.0f} MiB, RSS {rss:.2f} GiB")

    bptt = []
    learner_b = bs.online(model, algorithm="bptt", optimizer=optax.adam(1e-3))
    for T in args.bptt_T:
        label = f"bptt T={T} compiled temp memory"
        if bptt and bptt[-1]["xla_temp_GiB"] > args.mem_limit:
            progress.skip(label, f"skipped (T={bptt[-1]['T']} is over {args.mem_limit:g} GiB)")
            continue
        i = progress.start(label)
        xs_T, ys_T = data(T, args.B, args.inputs, args.outputs)
        st = learner_b.init(jax.random.PRNGKey(0), xs_T[0])
        temp = learner_b.train_sequence.lower(st, xs_T, ys_T).compile().memory_analysis()
        gib = temp.temp_size_in_bytes / 2 ** 30
        bptt.append(dict(T=T, xla_temp_GiB=gib, measured=True))
        progress.done(i, f"{gib:.2f} GiB")
    if len(bptt) >= 2:
        (t_a, m_a), (t_b, m_b) = [(r["T"], r["xla_temp_GiB"]) for r in bptt[-2:]]
        slope = (m_b - m_a) / (t_b - t_a)
        for T in (1000, 3000, 10000):
            if T > bptt[-1]["T"]:
                bptt.append(dict(T=T, xla_temp_GiB=m_b + slope * (T - t_b), measured=False))
    result["bptt"] = bptt
    (out / "scale.json").write_text(json.dumps(result, indent=1))
    lines = ["# Scale: ES-D-RTRL online on a sparse recurrent SNN", "",
             f"command: `{' '.join(sys.argv)}`", "",
             f"{args.neurons:,} LIF neurons, {n_syn:,} synapses (weight ops: {', '.join(kinds)}), "
             f"batch {args.B}, device {result['device']}", "",
             "| quantity | value |", "|---|---|",
             f"| time per online step (median of {len(times)}) | {result['step_median_s']:.3f} s |",
             f"| first step incl. compile | {compile_s:.1f} s |",
             f"| XLA temp memory of the step | {result['step_xla_temp_MiB']:.0f} MiB |",
             f"| process peak RSS | {rss:.2f} GiB |",
             f"| spike rate at the last step | {rate:.3f} |",
             f"| loss first / last step | {losses[0]:.3f} / {losses[-1]:.3f} |", "",
             "BPTT's compiled temp memory for one training sequence at the same size "
             "(measured = compiled and read from XLA; extrapolated = linear in T from the "
             "last two measurements):", "", "| T | XLA temp GiB | |", "|---|---|---|"]
    lines += [f"| {r['T']} | {r['xla_temp_GiB']:.2f} | {'measured' if r['measured'] else 'extrapolated'} |"
              for r in bptt]
    (out / "scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
