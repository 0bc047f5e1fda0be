"""Every learning rule on spike-encoded digits, side by side.

Network: 64 rate-coded inputs (T steps, max rate 0.5) -> LIF 128 -> LIF 64
-> linear readout to 10 classes; the label is asked at every step of the
second half. Gradient learners (BPTT, D-RTRL, ES-D-RTRL, e-prop with random
feedback, OSTL) train all weights; the hybrids put the first layer under a
local rule (SoftHebb, Oja, pair STDP) and train the rest with ES-D-RTRL;
DECOLLE trains two DecolleLayers (64 -> 128 -> 64) with their local
readouts. Reported: test accuracy (readout summed over the labelled steps,
360 held-out digits), median seconds per training sequence, and XLA's
temporary memory of the compiled training step.

    python benchmarks/local_rules.py [--steps 135] [--T 20] [--only NAME ...]
        [--out bench_out/local_rules]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import brainscale as bs  # noqa: E402
from brainscale.decolle_layer import DecolleLayer  # noqa: E402
from brainscale.neurons import LIF  # noqa: E402
from brainscale.tasks.digits import load_digits_split, rate_encode  # noqa: E402
from transforms.rules import hebbian, stdp  # noqa: E402
from transforms.rules.decolle import decolle, local_readout  # noqa: E402

B = 32
FIELDS = ["method", "accuracy", "s_per_sequence", "xla_temp_mib", "steps"]


class Net(nnx.Module):
    def __init__(self, rngs, n1=128, n2=64):
        self.fc1 = nnx.Linear(64, n1, rngs=rngs)
        self.lif1 = LIF(n1, tau=10.0, v_th=0.5)
        self.fc2 = nnx.Linear(n1, n2, rngs=rngs)
        self.lif2 = LIF(n2, tau=10.0, v_th=0.5)
        self.out = nnx.Linear(n2, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.lif2(self.fc2(3.0 * self.lif1(self.fc1(2.0 * x)))))


class DecolleNet(nnx.Module):
    def __init__(self, rngs):
        kw = dict(rngs=rngs, alpha=0.9, beta=0.8, scale=4.0)
        self.l1 = DecolleLayer(64, 128, **kw)
        self.l2 = DecolleLayer(128, 64, **kw)

    def __call__(self, x):
        return self.l2(self.l1(x))


FIRST = "params['fc1']['kernel']"
GRADIENT = {
    "bptt": dict(algorithm="bptt"),
    "d_rtrl": dict(algorithm="d_rtrl"),
    "es_d_rtrl": dict(algorithm="es_d_rtrl"),
    "e_prop (random B)": dict(algorithm="e_prop", feedback="random"),
    "ostl": dict(algorithm="ostl"),
    "softhebb + es_d_rtrl": dict(algorithm="es_d_rtrl",
                                 rules={FIRST: hebbian.softhebb(0.05)}),
    "oja + es_d_rtrl": dict(algorithm="es_d_rtrl", rules={FIRST: hebbian.oja(0.005)}),
    "stdp + es_d_rtrl": dict(algorithm="es_d_rtrl", rules={FIRST: stdp.stdp(
        a_plus=1e-3, a_minus=1.2e-3, bounds="multiplicative", w_min=-1.0, w_max=1.0)}),
}
METHODS = list(GRADIENT) + ["decolle"]


def labels(y, T):
    ys = np.full((T, len(y)), -1, np.int32)
    ys[T // 2:] = y[None]
    return jnp.asarray(ys)


def xla_temp_mib(fn, *args) -> float:
    try:
        mem = jax.jit(fn).lower(*args).compile().memory_analysis()
        return float(mem.temp_size_in_bytes) / 2 ** 20
    except Exception:                          # not every backend reports it
        return float("nan")


def run_gradient(name, data, steps, T, lr=3e-3):
    x_tr, y_tr, x_te, y_te = data
    cfg = dict(GRADIENT[name])
    learner = bs.online(Net(nnx.Rngs(0)), optimizer=optax.adam(lr), **cfg)
    state = learner.init(jax.random.PRNGKey(0), rate_encode(x_tr[:B], T, jax.random.PRNGKey(0))[0])
    rng, times = np.random.default_rng(0), []
    for step in range(steps):
        idx = rng.choice(len(x_tr), B, replace=False)
        xs = rate_encode(x_tr[idx], T, jax.random.PRNGKey(step + 1))
        t0 = time.perf_counter()
        state, m = learner.train_sequence(state, xs, labels(y_tr[idx], T))
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t0)
    mem = xla_temp_mib(learner._train_sequence, state, xs, labels(y_tr[idx], T))
    correct = 0
    n = (len(x_te) // B) * B
    for i in range(0, n, B):
        out = learner.predict(state, rate_encode(x_te[i:i + B], T, jax.random.PRNGKey(10 ** 6 + i)))
        correct += int(np.sum(np.asarray(out[T // 2:].sum(0)).argmax(-1) == y_te[i:i + B]))
    return correct / n, statistics.median(times[1:]), mem


def run_decolle(data, steps, T):
    x_tr, y_tr, x_te, y_te = data

    def rules(opt):
        return {f"params['{l}']['fc']['W']": decolle(opt, 10, burn_in=5, seed=i)
                for i, l in enumerate(("l1", "l2"))}

    model = DecolleNet(nnx.Rngs(0))
    net = bs.plasticity(model, rules(optax.adamax(3e-3)))
    x0 = rate_encode(x_tr[:B], T, jax.random.PRNGKey(0))[0]
    state = net.init(jax.random.PRNGKey(0), x0)

    rng, times = np.random.default_rng(0), []
    for step in range(steps):
        idx = rng.choice(len(x_tr), B, replace=False)
        xs = rate_encode(x_tr[idx], T, jax.random.PRNGKey(step + 1))
        ys = jnp.broadcast_to(jnp.asarray(y_tr[idx]), (T, B))
        t0 = time.perf_counter()
        state, out = net.run(net.reset(state), xs, targets=ys)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    mem = xla_temp_mib(net._run, net.reset(state), xs, None, ys)
    frozen = bs.plasticity(model, rules(optax.sgd(0.0)))
    ev = frozen.init(jax.random.PRNGKey(0), x0)._replace(params=state.params)
    G = ev.rules["params['l2']['fc']['W']"]
    correct, n = 0, (len(x_te) // B) * B
    for i in range(0, n, B):
        xs = rate_encode(x_te[i:i + B], T, jax.random.PRNGKey(10 ** 6 + i))
        _, spikes = frozen.run(frozen.reset(ev), xs, targets=jnp.full((T, B), -1))
        pred = np.asarray(local_readout(G, spikes[T // 2:]).sum(0)).argmax(-1)
        correct += int(np.sum(pred == y_te[i:i + B]))
    return correct / n, statistics.median(times[1:]), mem


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=135, help="training sequences (batch 32)")
    p.add_argument("--T", type=int, default=20)
    p.add_argument("--only", nargs="*", choices=METHODS)
    p.add_argument("--out", default=os.path.join("bench_out", "local_rules"))
    args = p.parse_args(argv)
    data = load_digits_split()
    rows = []
    for name in args.only or METHODS:
        if name == "decolle":
            acc, sec, mem = run_decolle(data, args.steps, args.T)
        else:
            acc, sec, mem = run_gradient(name, data, args.steps, args.T)
        rows.append({"method": name, "accuracy": acc, "s_per_sequence": sec,
                     "xla_temp_mib": mem, "steps": args.steps})
        print(f"{name:22s} accuracy {acc:.3f}  {sec * 1000:7.1f} ms/sequence  "
              f"XLA temp {mem:.2f} MiB", flush=True)
    os.makedirs(args.out, exist_ok=True)
    common.write_csv(os.path.join(args.out, "local_rules.csv"), rows, FIELDS)
    table = common.md_table(
        ["method", "test accuracy", "ms per sequence (median)", "XLA temp (MiB)"],
        [[r["method"], f"{100 * r['accuracy']:.1f}%", f"{1000 * r['s_per_sequence']:.1f}",
          f"{r['xla_temp_mib']:.2f}"] for r in rows])
    info = common.device_info()
    lines = common.header_lines("Local rules on spike-encoded digits", info,
                                common.command_line("benchmarks/local_rules.py", argv))
    with open(os.path.join(args.out, "local_rules.md"), "w") as f:
        f.write("\n".join(lines) + "\n\n" + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
