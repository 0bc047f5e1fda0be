"""Online learning at scale: a recurrent SNN of LIF neurons with sparse
fixed in-degree synapses, trained by ES-D-RTRL one time step at a time.

Connectivity has fixed in-degree (``--fan-in`` recurrent synapses per neuron,
``--fan-in-input`` from the Poisson input), stored sparsely as index arrays
the step closes over and applied by ``segment_sum(W * s[pre], post)``, which
the compiler recognises as a weight op. Batch ``--B``, Adam on every weight,
one ``learner.step`` per time step.

Reported: the compile time (tracing the learner's step and XLA's compile,
ahead of the first call), the first step, seconds per step (median), the
process's peak RSS over the online run, the bytes of parameters + optimizer
state + index arrays and the ratio of the peak RSS to them, the step's XLA
temp memory, and BPTT's temp memory for one training
sequence of each ``--bptt-T``, read from XLA's compiled program without
running it (the state and data are shape specs, nothing is allocated).

    python benchmarks/scale.py --out bench_out/scale [--neurons 1000000 --fan-in 100]

``--no-donate`` runs the learner without state donation (every state kept
usable; the old and the new state then coexist during a step).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import brainscale as bs  # noqa: E402
from common import Progress, command_line, peak_rss_mib  # noqa: E402
from brainscale.nn.surrogate import SuperSpike  # noqa: E402

spike = SuperSpike(beta=10.0)
GiB = 2 ** 30


def build(n, fan_in, n_in, fan_in_input, n_out, seed=0):
    """``(model, synapses, index bytes)``: the network as a ``StepModel``
    closing over its int32 index arrays."""
    rng = np.random.default_rng(seed)
    post_rec = np.repeat(np.arange(n, dtype=np.int32), fan_in)
    pre_rec = rng.integers(0, n, size=n * fan_in, dtype=np.int32)
    post_in = np.repeat(np.arange(n, dtype=np.int32), fan_in_input)
    pre_in = rng.integers(0, n_in, size=n * fan_in_input, dtype=np.int32)
    pre_rec, post_rec, pre_in, post_in = map(jnp.asarray, (pre_rec, post_rec, pre_in, post_in))
    index_bytes = sum(a.nbytes for a in (pre_rec, post_rec, pre_in, post_in))

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
    return bs.StepModel(init, apply), int(pre_rec.shape[0] + pre_in.shape[0]), int(index_bytes)


def data(T, B, n_in, n_out, seed=1):
    """Poisson inputs (T, B, n_in) and a label drawn anew at every step
    (T, B): a fixed label is learned within a few steps, after which the
    loss's gradient is exactly zero and the learner skips the weight
    gradient, so the steps would not measure online learning."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    xs = jax.random.bernoulli(k1, 0.05, (T, B, n_in)).astype(jnp.float32)
    ys = jax.random.randint(k2, (T, B), 0, n_out)
    return xs, ys


def _cpu_s() -> float:
    """CPU seconds of this process so far (user + system: XLA's threads and
    the kernel's page faults)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _nbytes(tree) -> int:
    return int(sum(np.dtype(a.dtype).itemsize * int(np.prod(a.shape))
                   for a in jax.tree_util.tree_leaves(tree)))


def online(args, model, index_bytes, progress):
    """Time ``--steps`` online steps; peak RSS and byte counts."""
    xs, ys = data(args.steps, args.B, args.inputs, args.outputs)
    i = progress.start(f"es_d_rtrl online, {args.neurons:,} neurons, {args.steps} steps")
    kw = {"donate": True} if args.donate else {}
    t0 = time.perf_counter()
    learner = bs.online(model, algorithm="es_d_rtrl", optimizer=optax.adam(1e-3), decay=0.9,
                        **kw)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    place = lambda x, y: (x, y)
    if args.mesh:               # weights, traces and hidden state split by neurons
        from brainscale.model_parallel import model_mesh, shard_batch, shard_model
        mesh = model_mesh(*map(int, args.mesh.split("x")))
        state = shard_model(learner, state, mesh)
        place = lambda x, y: shard_batch((x, y), mesh, time_axis=False)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    kinds = sorted({op.kind for op in learner.graph.ops})
    state_bytes = _nbytes((state.params, state.opt_state))
    t0 = time.perf_counter()
    step_temp = learner.step.lower(state, *place(xs[0], ys[0])).compile().memory_analysis()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, _, m = learner.step(state, *place(xs[0], ys[0]))
    jax.block_until_ready(m["loss"])
    first_s = time.perf_counter() - t0
    times, cpu, losses, live = [], [], [], 0
    for t in range(1, args.steps):
        t1, c1 = time.perf_counter(), _cpu_s()
        state, _, m = learner.step(state, *place(xs[t], ys[t]))
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t1)
        cpu.append(_cpu_s() - c1)
        losses.append(float(m["loss"]))
        live += float(m["grad_norm"]) > 0
    rss = peak_rss_mib() * 2 ** 20
    median = float(np.median(times))
    r = dict(init_s=init_s, first_step_s=first_s, compile_s=compile_s,
             step_median_s=median, step_min_s=float(np.min(times)), steps=args.steps,
             steps_with_gradient=int(live), step_cpu_median_s=float(np.median(cpu)),
             load_average=os.getloadavg()[0],
             peak_rss_GiB=rss / GiB, params_opt_GiB=state_bytes / GiB,
             indices_GiB=index_bytes / GiB,
             rss_ratio=rss / (state_bytes + index_bytes),
             step_xla_temp_GiB=step_temp.temp_size_in_bytes / GiB,
             op_kinds=kinds, donate=args.donate, mesh=args.mesh,
             devices=len(jax.devices()),
             last_step_spike_rate=float(jnp.mean(state.hidden["s"])),
             loss_first=losses[0], loss_last=losses[-1])
    progress.done(i, f"{median:.3f} s/step, compile {r['compile_s']:.1f} s, "
                     f"peak RSS {r['peak_rss_GiB']:.2f} GiB ({r['rss_ratio']:.2f}x params + "
                     f"opt state + indices)")
    return r


def bptt_memory(args, model, progress):
    """BPTT's compiled temp memory per ``--bptt-T``, from shape specs: XLA
    compiles the training step and reports its memory; nothing runs."""
    learner = bs.online(model, algorithm="bptt", optimizer=optax.adam(1e-3))
    spec = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)
    x0 = jax.ShapeDtypeStruct((args.B, args.inputs), jnp.float32)
    state = jax.eval_shape(learner.init, jax.random.PRNGKey(0), x0)
    out = []
    for T in args.bptt_T:
        i = progress.start(f"bptt T={T}: compiled temp memory (not run)")
        xs = jax.ShapeDtypeStruct((T, args.B, args.inputs), jnp.float32)
        ys = jax.ShapeDtypeStruct((T, args.B), jnp.int32)
        t0 = time.perf_counter()
        mem = learner.train_sequence.lower(jax.tree.map(spec, state), xs, ys).compile() \
            .memory_analysis()
        gib = mem.temp_size_in_bytes / GiB
        out.append(dict(T=T, xla_temp_GiB=gib, compile_s=time.perf_counter() - t0,
                        source="compile().memory_analysis()"))
        progress.done(i, f"{gib:.2f} GiB")
    return out


def report(args, result) -> list[str]:
    o = result["online"]
    lines = ["# Scale: ES-D-RTRL online on a sparse recurrent SNN", "",
             f"command: `{result['command']}`", "",
             f"{args.neurons:,} LIF neurons, {result['synapses']:,} synapses (weight ops: "
             f"{', '.join(o['op_kinds'])}), batch {args.B}, state donation "
             f"{'on' if o['donate'] else 'off'}, device {result['device']}"
             + (f", mesh {o['mesh']} of {o['devices']} devices" if o.get("mesh") else ""), "",
             "| quantity | value |", "|---|---|",
             f"| compile (trace + XLA compile of the step) | {o['compile_s']:.1f} s |",
             f"| first step (after the compile) | {o['first_step_s']:.2f} s |",
             f"| init (trace, analysis, initial state) | {o['init_s']:.1f} s |",
             f"| time per online step (median of {o['steps'] - 1}) | {o['step_median_s']:.3f} s |",
             f"| CPU time per online step (median; user + system) | "
             f"{o['step_cpu_median_s']:.3f} s |",
             f"| timed steps with a nonzero gradient | {o['steps_with_gradient']} of "
             f"{o['steps'] - 1} |",
             f"| 1-minute load average at the end (machine shared) | {o['load_average']:.1f} |",
             f"| process peak RSS (online run) | {o['peak_rss_GiB']:.2f} GiB |",
             f"| parameters + optimizer state | {o['params_opt_GiB']:.2f} GiB |",
             f"| index arrays | {o['indices_GiB']:.2f} GiB |",
             f"| peak RSS / (parameters + optimizer state + indices) | {o['rss_ratio']:.2f} |",
             f"| XLA temp memory of the step | {o['step_xla_temp_GiB']:.2f} GiB |",
             f"| spike rate at the last step | {o['last_step_spike_rate']:.3f} |",
             f"| loss first / last step | {o['loss_first']:.3f} / {o['loss_last']:.3f} |"]
    if not result["bptt"]:
        return lines
    lines += ["", "BPTT's temp memory for one training sequence at the same size, from XLA's "
              "compiled program (`lower(...).compile().memory_analysis()` on shape specs; "
              "not run):", "", "| T | XLA temp GiB | compile s |", "|---|---|---|"]
    lines += [f"| {r['T']} | {r['xla_temp_GiB']:.2f} | {r['compile_s']:.1f} |"
              for r in result["bptt"]]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/scale")
    ap.add_argument("--neurons", type=int, default=100_000)
    ap.add_argument("--fan-in", type=int, default=100)
    ap.add_argument("--fan-in-input", type=int, default=10)
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--outputs", type=int, default=10)
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="online steps run (the first compiles)")
    ap.add_argument("--mesh", default=None, metavar="BxN",
                    help="run on a batch x neurons device mesh (brainscale.model_parallel); "
                         "on CPU force devices with "
                         "XLA_FLAGS=--xla_force_host_platform_device_count=N")
    ap.add_argument("--bptt-T", type=int, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--no-donate", dest="donate", action="store_false",
                    help="keep every state usable (no buffer donation)")
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the first step compiles)")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model, n_syn, index_bytes = build(args.neurons, args.fan_in, args.inputs,
                                      args.fan_in_input, args.outputs)
    progress = Progress(1 + len(args.bptt_T))
    result = dict(command=command_line(__file__, argv), neurons=args.neurons, synapses=n_syn,
                  B=args.B, device=str(jax.devices()[0]))
    result["online"] = online(args, model, index_bytes, progress)
    result["bptt"] = bptt_memory(args, model, progress)
    (out / "scale.json").write_text(json.dumps(result, indent=1))
    (out / "scale.md").write_text("\n".join(report(args, result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
