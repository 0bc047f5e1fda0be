"""Memory and speed of BPTT, D-RTRL and ES-D-RTRL against sequence length.

Network ("lif-delta", per sample; the learner vmaps over the batch)::

    Bernoulli(0.05) input 100 -> Recurrent(100, H, LIF tau 10, soft reset)
        -> Recurrent(H, H, LIF tau 10) -> LeakyReadout(H, 10, tau 10)

with cross-entropy at every step against one random label per sample, B 32.
Every (algorithm, T, H) runs in its own process (this script with ``--one``)
so that peak RSS and compile caches do not leak between configurations. Each
measures: the first call of ``learner.train_sequence`` (reset, the whole
sequence, one optax.sgd update; compile + one step), the median time of
``--reps`` further calls after two warm-up calls, XLA's temp memory of the
compiled step (``.lower(...).compile().memory_analysis()``) and the peak RSS
of the process. Configurations whose estimated run time (from the same
algorithm and H at a smaller T; time is linear in T) exceeds ``--budget`` are
skipped; timeouts and out-of-memory kills are recorded, not raised.

    python benchmarks/memory_time.py --quick
    python benchmarks/memory_time.py --algorithms bptt,es_d_rtrl --T 100,1000 --H 200
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (numpy only; jax is imported where it is needed)

ALGORITHMS = ("bptt", "d_rtrl", "es_d_rtrl")
N_IN, N_OUT, P_IN, TAU = 100, 10, 0.05, 10.0
W_IN, W_REC = (40.0, 25.0), 6.0     # input scale of layers 1 and 2, recurrent scale (~10 % rates)
MARK = "RESULT "                    # prefix of the child's JSON line
PLATFORMS = {"cpu": "cpu", "gpu": "cuda"}
FIELDS = ["algorithm", "T", "H", "B", "status", "first_call_s", "step_s",
          "step_min_s", "ms_per_timestep", "temp_mib", "temp_bytes", "argument_bytes",
          "output_bytes", "peak_rss_mib", "device_peak_mib", "loss", "reps", "wall_s",
          "backend", "device", "jax", "note"]


# -- one configuration (child process) --------------------------------------------

def build_net(H, seed):
    from flax import nnx

    from brainscale.nn.neurons import LIF
    from brainscale.nn.projections import Recurrent
    from brainscale.nn.readout import LeakyReadout

    class LifDelta(nnx.Module):
        def __init__(self, rngs):
            self.l1 = Recurrent(N_IN, H, LIF(H, tau=TAU, reset="soft"), rngs=rngs,
                                w_in_scale=W_IN[0], w_rec_scale=W_REC)
            self.l2 = Recurrent(H, H, LIF(H, tau=TAU, reset="soft"), rngs=rngs,
                                w_in_scale=W_IN[1], w_rec_scale=W_REC)
            self.out = LeakyReadout(H, N_OUT, tau=TAU, rngs=rngs)

        def __call__(self, x):
            return self.out(self.l2(self.l1(x)))

    return LifDelta(nnx.Rngs(seed))


def run_one(algorithm, T, H, batch, reps, seed=0) -> dict:
    """Measure one configuration in this process; returns a result dict."""


    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import brainscale as bs

    try:
        jax.devices()
    except Exception as e:  # jax 0.10 raises a bare AssertionError for a missing plugin
        raise RuntimeError(f"no JAX backend for JAX_PLATFORMS="
                           f"{os.environ.get('JAX_PLATFORMS')!r} (is the plugin, e.g. "
                           f"jax[cuda12], installed?): {type(e).__name__} {e}") from e
    xs, ys = common.bernoulli_inputs(seed, T, batch, N_IN, P_IN, N_OUT)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    learner = bs.online(build_net(H, seed), common.algorithm(algorithm, 0.9),
                        optimizer=optax.sgd(1e-3))
    state = learner.init(jax.random.PRNGKey(seed), xs[0])

    def call(state):
        t0 = time.perf_counter()
        state, metrics = learner.train_sequence(state, xs, ys)
        jax.block_until_ready((state, metrics))
        return state, metrics, time.perf_counter() - t0

    state, metrics, first = call(state)
    for _ in range(2):
        state, metrics, _ = call(state)
    times = []
    for _ in range(reps):
        state, metrics, dt = call(state)
        times.append(dt)
    step = float(np.median(times))
    mem = learner.train_sequence.lower(state, xs, ys).compile().memory_analysis()
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    peak_dev = (stats or {}).get("peak_bytes_in_use")
    info = common.device_info()
    return {"algorithm": algorithm, "T": T, "H": H, "B": batch, "status": "ok",
            "first_call_s": first, "step_s": step,
            "step_min_s": float(np.min(times)), "ms_per_timestep": 1e3 * step / T,
            "temp_bytes": int(mem.temp_size_in_bytes),
            "temp_mib": mem.temp_size_in_bytes / 2**20,
            "argument_bytes": int(mem.argument_size_in_bytes),
            "output_bytes": int(mem.output_size_in_bytes),
            "peak_rss_mib": common.peak_rss_mib(),
            "device_peak_mib": None if peak_dev is None else peak_dev / 2**20,
            "loss": float(metrics["loss"]), "reps": reps, **info}


# -- the grid (parent process) ------------------------------------------------------

def launch(algorithm, T, H, args) -> dict:
    """Run one configuration in a subprocess; failures become status rows."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", algorithm, str(T), str(H),
           "--batch", str(args.batch), "--reps", str(args.reps), "--seed", str(args.seed)]
    env = dict(os.environ)
    if args.device:
        env["JAX_PLATFORMS"] = PLATFORMS[args.device]
    row = {"algorithm": algorithm, "T": T, "H": H, "B": args.batch, "reps": args.reps}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": "timeout", "wall_s": time.perf_counter() - t0,
                "note": f"killed after {args.timeout:g} s"}
    row["wall_s"] = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode == 0 and lines:
        return {**json.loads(lines[-1][len(MARK):]), "wall_s": row["wall_s"]}
    last = _error_line(proc.stderr) or f"exit code {proc.returncode}"
    oom = proc.returncode in (-9, 137) or any(
        s in proc.stderr for s in ("RESOURCE_EXHAUSTED", "Out of memory", "MemoryError",
                                   "out of memory", "bad_alloc"))
    return {**row, "status": "oom" if oom else "error", "note": last}


def _error_line(stderr: str) -> str:
    """The exception line of a child's traceback (else its last line)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ("Error" in ln or "Exception" in ln) and not ln.startswith(("For simplicity", "File ")):
            return ln[:300]
    return lines[-1][:300] if lines else ""


def estimate_seconds(done, T) -> float | None:
    """Run time of a configuration at T from the largest smaller T that
    succeeded for the same algorithm and H: its compile time (first call less
    one step) plus 3 + reps steps, a step's time linear in T."""
    ok = [r for r in done if r["status"] == "ok" and r["T"] < T]
    if not ok:
        return None
    r = max(ok, key=lambda r: r["T"])
    step = r["step_s"] * T / r["T"]
    return max(r["first_call_s"] - r["step_s"], 0.0) + (3 + r["reps"]) * step


def run_chain(algorithm, H, args, progress) -> list[dict]:
    """All T for one algorithm and H, smallest first (estimates need them);
    a line per configuration on ``progress`` (a ``common.Progress``)."""
    done = []
    for T in sorted(args.T):
        failed = [r for r in done if r["status"] in ("timeout", "oom")]
        est = estimate_seconds(done, T)
        base = {"algorithm": algorithm, "T": T, "H": H, "B": args.batch, "reps": args.reps}
        label = f"{algorithm} T={T} H={H}"
        if failed:
            row = {**base, "status": "skipped", "note": f"{failed[0]['status']} at T {failed[0]['T']}"}
        elif est is not None and est > args.budget:
            row = {**base, "status": "skipped", "note": f"estimated {est:.0f} s > budget {args.budget:g} s"}
        else:
            i = progress.start(label)
            row = launch(algorithm, T, H, args)
            progress.done(i, f"{row['step_s']:.3f} s/step, first call {row['first_call_s']:.1f} s, "
                          f"temp {row['temp_mib']:.1f} MiB, RSS {row['peak_rss_mib']:.0f} MiB"
                          if row["status"] == "ok" else f"{row['status']} ({row.get('note', '')})")
        if row["status"] == "skipped":
            progress.skip(label, f"skipped ({row['note']})")
        done.append(row)
    return done


# -- reporting ---------------------------------------------------------------------

METRICS = [("step_s", "time per training step (s; one train_sequence call over T steps)", 3),
           ("first_call_s", "compile time (s; the first call: trace, compile, one step)", 3),
           ("temp_mib", "XLA temp memory of the compiled step (MiB)", 3),
           ("peak_rss_mib", "peak RSS of the process (MiB)", 4)]


def cell(r, key, digits):
    if r is None:
        return ""
    if r["status"] != "ok":
        return r["status"] if r["status"] != "skipped" else f"skipped ({r.get('note', '')})"
    return common.fmt(r.get(key), digits)


def write_markdown(path, rows, args, info, cmd, seconds):
    lines = common.header_lines("Memory and time vs sequence length (lif-delta)", info, cmd)
    lines += [f"- network: Bernoulli({P_IN}) input {N_IN} -> recurrent LIF H -> recurrent LIF H "
              f"-> leaky readout {N_OUT} (tau {TAU:g}); cross-entropy every step; B {args.batch}; "
              f"optax.sgd; ES-D-RTRL decay 0.9",
              f"- each configuration in its own process; median of {args.reps} calls after 2 "
              f"warm-up calls; timeout {args.timeout:g} s, budget {args.budget:g} s"
              + (f"; {args.jobs} concurrent processes (timings distorted)" if args.jobs > 1 else ""),
              "- the CSV also has ms per time step, the fastest call, XLA argument/output sizes, "
              "the device's peak memory where the backend reports it, and the final loss",
              f"- total wall time {seconds:.1f} s", ""]
    Ts = sorted(args.T)
    tables = []
    for H in args.H:
        for key, title, digits in METRICS:
            body = []
            for alg in args.algorithms:
                by_T = {r["T"]: r for r in rows if r["algorithm"] == alg and r["H"] == H}
                body.append([alg] + [cell(by_T.get(T), key, digits) for T in Ts])
            tables.append(f"### H {H}: {title}\n\n"
                          + common.md_table(["algorithm"] + [f"T {T}" for T in Ts], body))
    lines += ["\n\n".join(tables), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return "\n\n".join(tables)


def plot(out, rows, args):
    plt = common.pyplot()
    styles = ["-", "--", ":", "-."]
    for fname, panels in (("memory_vs_T.png", [("temp_mib", "XLA temp memory (MiB)"),
                                                ("peak_rss_mib", "peak RSS (MiB)")]),
                          ("time_vs_T.png", [("step_s", "time per training step (s)"),
                                             ("ms_per_timestep", "ms per time step")])):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, (key, label) in zip(axes, panels):
            for i, H in enumerate(args.H):
                for c, alg in enumerate(args.algorithms):
                    pts = sorted((r["T"], r[key]) for r in rows
                                 if r["algorithm"] == alg and r["H"] == H and r["status"] == "ok"
                                 and r.get(key) and r[key] > 0)
                    if pts:
                        ax.plot(*zip(*pts), styles[i % 4], marker="o", color=f"C{c}",
                                label=f"{alg.replace('_', '-')} H {H}")
            ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel=label)
            ax.grid(True, which="both", alpha=0.3)
        if axes[0].get_legend_handles_labels()[0]:
            axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, fname), dpi=120)
        plt.close(fig)


# -- command line ------------------------------------------------------------------

def _ints(s):
    return [int(v) for v in s.split(",") if v.strip()]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Memory and time per training step of BPTT, D-RTRL and ES-D-RTRL vs "
                    "sequence length on the lif-delta network; one process per configuration.")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS),
                    help="comma-separated subset of bptt,d_rtrl,es_d_rtrl")
    ap.add_argument("--T", type=_ints, default=None, help="sequence lengths (default 100,300,1000,3000)")
    ap.add_argument("--H", type=_ints, default=None, help="hidden sizes (default 200,512)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=None, help="timed calls (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per configuration")
    ap.add_argument("--budget", type=float, default=None,
                    help="skip configurations estimated to take longer (s; default: --timeout; "
                         "'inf' never skips)")
    ap.add_argument("--device", choices=sorted(PLATFORMS), default=None,
                    help="set JAX_PLATFORMS for the subprocesses (default: inherit)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="concurrent subprocesses (>1 distorts timings; for smoke tests)")
    ap.add_argument("--quick", action="store_true", help="T 100,300, H 200, reps 2")
    ap.add_argument("--out", default="bench_out/memory_time", help="output folder")
    ap.add_argument("--one", nargs=3, metavar=("ALGO", "T", "H"),
                    help="internal: measure one configuration and print a JSON line")
    args = ap.parse_args(argv)
    defaults = (dict(T=[100, 300], H=[200], reps=2) if args.quick
                else dict(T=[100, 300, 1000, 3000], H=[200, 512], reps=3))
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.budget = args.timeout if args.budget is None else args.budget
    args.algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    bad = [a for a in args.algorithms if a not in ALGORITHMS]
    if bad or not args.algorithms:
        ap.error(f"unknown algorithms {bad}; choose from {','.join(ALGORITHMS)}")
    if args.reps < 1 or args.jobs < 1 or not args.T or not args.H:
        ap.error("--reps and --jobs must be >= 1, --T and --H non-empty")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        algo, T, H = args.one[0], int(args.one[1]), int(args.one[2])
        print(MARK + json.dumps(run_one(algo, T, H, args.batch, args.reps, args.seed)), flush=True)
        return 0
    os.makedirs(args.out, exist_ok=True)
    cmd = common.command_line(__file__, argv)
    print(f"memory_time: {args.algorithms} x T {args.T} x H {args.H}, B {args.batch}, "
          f"reps {args.reps}, device {args.device or 'inherited'}", flush=True)
    t0 = time.perf_counter()
    chains = [(alg, H) for H in args.H for alg in args.algorithms]
    progress = common.Progress(len(chains) * len(args.T))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda c: run_chain(c[0], c[1], args, progress), chains))
    rows = [r for chain in results for r in chain]
    seconds = time.perf_counter() - t0
    info = next(({k: r[k] for k in ("jax", "backend", "device")} for r in rows
                 if r["status"] == "ok"), None)
    if info is None:   # nothing ran: describe the device the children would have used
        info = {"jax": "?", "backend": args.device or "?", "device": "? (no run succeeded)"}
    for r in rows:
        for k in ("jax", "backend", "device"):
            r.setdefault(k, info[k])
    common.write_csv(os.path.join(args.out, "memory_time.csv"), rows, FIELDS)
    tables = write_markdown(os.path.join(args.out, "memory_time.md"), rows, args, info, cmd,
                            seconds)
    plot(args.out, rows, args)
    print(tables)
    print(f"wrote {args.out}/memory_time.csv, memory_time.md, memory_vs_T.png, time_vs_T.png "
          f"in {seconds:.1f} s")
    return 0 if any(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
