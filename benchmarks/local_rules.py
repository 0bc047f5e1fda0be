"""Every learning rule on spike-encoded digits (and on DMTS), side by side.

Network: 64 rate-coded inputs (T steps, max rate 0.5) -> LIF 128 -> LIF 64
-> linear readout to 10 classes; the label is asked at every step of the
second half. Gradient learners (BPTT, D-RTRL, ES-D-RTRL, e-prop with random
feedback, OSTL) train all weights; the hybrids put the first layer under a
local rule (SoftHebb, Oja, pair STDP) and train the rest with ES-D-RTRL;
DECOLLE trains two DecolleLayers (64 -> 128 -> 64) with their local
readouts; SBP trains its own 3-layer SNN (64 -> 200 -> 10, two phases per
batch: ``T`` free steps, 10 nudged; ``--sbp-iterations`` batches).
Reported: test accuracy (readout summed over the labelled steps,
352 held-out digits), median seconds per training sequence, and XLA's
temporary memory of the compiled training step and its floating-point
operation count per sequence (the training cost: XLA's count for one time
step, times the steps; for BPTT one step's forward and backward, and the
optimizer update counted at every step).

``--task dmts``: delayed match-to-sample (sample 200 ms, ``--delay`` 300 ms,
test 200 ms; the answer scored on the test window) with the examples'
recurrent ALIF network (100 -> 200 recurrent -> leaky readout 2); the
hybrids' rule drives the recurrent layer's weight (input and recurrent
rows); DECOLLE is two feed-forward DecolleLayers 100 -> 200 -> 64, which
keep nothing over the delay.

    python benchmarks/local_rules.py [--task digits|dmts] [--steps N] [--T 20]
        [--delay 300] [--only NAME ...] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import brainscale as bs  # noqa: E402
from brainscale.nn.decolle_layer import DecolleLayer  # noqa: E402
from brainscale.nn.neurons import LIF  # noqa: E402
from brainscale.models.sbp_snn import SBPNet, TwoPhase, sbp_rules  # noqa: E402
from brainscale.tasks.digits import load_digits_split, rate_encode  # noqa: E402
from brainscale.tasks.dmts_task import make_task  # noqa: E402
from transforms.errors import UnsupportedAlgorithmError  # noqa: E402
from transforms.plasticity.rules import hebbian, stdp  # noqa: E402
from transforms.plasticity.rules.decolle import decolle, local_readout  # noqa: E402

B = 32
FIELDS = ["method", "accuracy", "s_per_sequence", "xla_temp_mib", "mflop_per_sequence",
          "steps"]


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
    def __init__(self, rngs, n_in, n1, n2):
        kw = dict(rngs=rngs, alpha=0.9, beta=0.8, scale=4.0)
        self.l1 = DecolleLayer(n_in, n1, **kw)
        self.l2 = DecolleLayer(n1, n2, **kw)

    def __call__(self, x):
        return self.l2(self.l1(x))


FIRST = "params['fc1']['kernel']"


def gradient_methods(first):
    """The gradient learners and the hybrids whose layer ``first`` follows a
    local rule."""
    return {
        "bptt": dict(algorithm="bptt"),
        "d_rtrl": dict(algorithm="d_rtrl"),
        "es_d_rtrl": dict(algorithm="es_d_rtrl"),
        "e_prop (random B)": dict(algorithm="e_prop", feedback="random"),
        "ostl": dict(algorithm="ostl"),
        "softhebb + es_d_rtrl": dict(algorithm="es_d_rtrl",
                                     rules={first: hebbian.softhebb(0.05)}),
        "oja + es_d_rtrl": dict(algorithm="es_d_rtrl", rules={first: hebbian.oja(0.005)}),
        "stdp + es_d_rtrl": dict(algorithm="es_d_rtrl", rules={first: stdp.stdp(
            a_plus=1e-3, a_minus=1.2e-3, bounds="multiplicative", w_min=-1.0, w_max=1.0)}),
    }


METHODS = list(gradient_methods(FIRST)) + ["decolle", "sbp"]


def labels(y, T):
    ys = np.full((T, len(y)), -1, np.int32)
    ys[T // 2:] = y[None]
    return jnp.asarray(ys)


class Setup(NamedTuple):
    """One task for the table: networks, batches and the held-out set."""
    net: Callable                 # () -> the gradient learners' network
    first: str                    # the path of the layer the hybrids' rules drive
    decolle_net: Callable         # () -> DecolleNet
    n_out: int
    batch: Callable               # step -> (xs (T,B,I), ys (T,B), -1 = no label)
    held_out: Callable            # () -> iterable of (xs, ys (T,B), y (B,))
    lr: float


def digits_setup(T) -> Setup:
    x_tr, y_tr, x_te, y_te = load_digits_split()
    rng, order = np.random.default_rng(0), []       # every method: the same batches

    def batch(step):
        while len(order) <= step:
            order.append(rng.choice(len(x_tr), B, replace=False))
        idx = order[step]
        return rate_encode(x_tr[idx], T, jax.random.PRNGKey(step + 1)), labels(y_tr[idx], T)

    def held_out():
        for i in range(0, (len(x_te) // B) * B, B):
            xs = rate_encode(x_te[i:i + B], T, jax.random.PRNGKey(10 ** 6 + i))
            yield xs, labels(y_te[i:i + B], T), y_te[i:i + B]

    return Setup(lambda: Net(nnx.Rngs(0)), FIRST,
                 lambda: DecolleNet(nnx.Rngs(0), 64, 128, 64), 10, batch, held_out, 3e-3)


def dmts_setup(delay, n_eval=256) -> Setup:
    """DMTS (100 direction-tuned inputs; the answer in the test window only)
    with the examples' recurrent ALIF network (200 neurons, tau_a 2 s)."""
    task = make_task(delay=delay, fixation=10, sample=200, test=200, n_eval=n_eval)

    def batch(step):
        xs, ys = task.train_batch(0, step, B)
        return jnp.asarray(xs), jnp.asarray(ys)

    def held_out():
        for xs, ys in task.eval_batches(B):
            yield jnp.asarray(xs), jnp.asarray(ys), np.asarray(ys).max(0)

    return Setup(lambda: task.make_model({}, 0), "params['layers'][0]['linear']['W']",
                 lambda: DecolleNet(nnx.Rngs(0), 100, 200, 64), 2, batch,
                 held_out, 5e-3)


def score(logits, ys, y):
    """Held-out hits: the logits summed over the labelled steps."""
    mask = (np.asarray(ys) >= 0)[..., None]
    pred = (np.asarray(logits) * mask).sum(0).argmax(-1)
    keep = y >= 0
    return int(np.sum(pred[keep] == y[keep])), int(keep.sum())


def xla_cost(fn, *args) -> tuple[float, float]:
    """XLA's temporary memory (MiB) and floating-point operations (MFLOP) of
    a compiled call; NaN where the backend does not report one. XLA counts
    a loop's body once, whatever its trip count: count a loop-free call."""
    compiled = jax.jit(fn).lower(*args).compile()
    try:
        mem = float(compiled.memory_analysis().temp_size_in_bytes) / 2 ** 20
    except Exception:
        mem = float("nan")
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost["flops"]) / 1e6
    except Exception:
        flops = float("nan")
    return mem, flops


def train_timed(update, state, batch, steps):
    """``state = update(state, xs, ys)`` over ``steps`` batches; the final
    state, the last batch and the median seconds per call (the first,
    compiling call left out)."""
    times = []
    for step in range(steps):
        xs, ys = batch(step)
        t0 = time.perf_counter()
        state = jax.block_until_ready(update(state, xs, ys))
        times.append(time.perf_counter() - t0)
    return state, (xs, ys), statistics.median(times[1:] or times)


def run_gradient(name, setup: Setup, steps):
    cfg = dict(gradient_methods(setup.first)[name])
    learner = bs.online(setup.net(), optimizer=optax.adam(setup.lr), **cfg)
    xs, ys = setup.batch(0)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    state, (xs, ys), sec = train_timed(lambda s, x, y: learner.train_sequence(s, x, y)[0],
                                       state, setup.batch, steps)
    mem = xla_cost(learner._train_sequence, state, xs, ys)[0]
    mflop = len(xs) * xla_cost(learner._train_sequence, state, xs[:1], ys[:1])[1]
    hits = [score(learner.predict(state, xs), ys, y) for xs, ys, y in setup.held_out()]
    return sum(h for h, _ in hits) / sum(n for _, n in hits), sec, mem, mflop


def run_decolle(setup: Setup, steps):
    def rules(opt):
        return {f"params['{l}']['fc']['W']": decolle(opt, setup.n_out, burn_in=5, seed=i)
                for i, l in enumerate(("l1", "l2"))}

    model = setup.decolle_net()
    net = bs.plasticity(model, rules(optax.adamax(3e-3)))
    xs, ys = setup.batch(0)
    state = net.init(jax.random.PRNGKey(0), xs[0])
    state, (xs, ys), sec = train_timed(lambda s, x, y: net.run(net.reset(s), x, targets=y)[0],
                                       state, setup.batch, steps)
    mem = xla_cost(net._run, net.reset(state), xs, None, ys)[0]
    mflop = len(xs) * xla_cost(net._step, state, xs[0], None, ys[0])[1]
    frozen = bs.plasticity(model, rules(optax.sgd(0.0)))
    ev = frozen.init(jax.random.PRNGKey(0), xs[0])._replace(params=state.params)
    G = ev.rules["params['l2']['fc']['W']"]
    hits = []
    for xs, ys, y in setup.held_out():
        _, spikes = frozen.run(frozen.reset(ev), xs, targets=jnp.full(ys.shape, -1))
        hits.append(score(local_readout(G, spikes), ys, y))
    return sum(h for h, _ in hits) / sum(n for _, n in hits), sec, mem, mflop


def run_sbp(T, iterations):
    """The 3-layer SNN of ``brainscale.models.sbp_snn`` (64 -> 200 -> 10) trained
    by two-phase SBP (``T`` free steps, 10 nudged) on rate-coded digits."""
    x_tr, y_tr, x_te, y_te = load_digits_split()
    tp = TwoPhase(SBPNet(64, 200, 10, rngs=nnx.Rngs(0)), 10, t_nudged=min(10, T),
                  rules=sbp_rules(eta=0.3))
    state = tp.init(jax.random.PRNGKey(0), jnp.zeros((B, 64)))
    rng = np.random.default_rng(0)

    def batch(step):
        idx = rng.choice(len(x_tr), B, replace=False)
        return rate_encode(x_tr[idx], T, jax.random.PRNGKey(step + 1)), jnp.asarray(y_tr[idx])

    state, (xs, ys), sec = train_timed(lambda s, x, y: tp.train(s, x, y)[0], state, batch,
                                       iterations)
    mem = xla_cost(tp._train, state, xs, ys)[0]
    x0 = jnp.concatenate([xs[0], jnp.zeros((B, 10))], -1)
    mflop = (T + tp.t_nudged) * xla_cost(tp.net._step, state, x0, 1.0, None)[1]
    hits, n = 0, (len(x_te) // B) * B
    for i in range(0, n, B):
        r = tp.predict(state, rate_encode(x_te[i:i + B], T, jax.random.PRNGKey(10 ** 6 + i)))
        hits += int(np.sum(np.asarray(r).argmax(-1) == y_te[i:i + B]))
    return hits / n, sec, mem, mflop


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=["digits", "dmts"], default="digits")
    p.add_argument("--steps", type=int, default=None,
                   help="training sequences of batch 32 (135 digits, 150 DMTS)")
    p.add_argument("--T", type=int, default=20, help="digits: steps per digit")
    p.add_argument("--delay", type=float, default=300.0, help="DMTS: delay in ms")
    p.add_argument("--n-eval", type=int, default=256, help="DMTS: held-out trials")
    p.add_argument("--sbp-iterations", type=int, default=1000,
                   help="digits: SBP's training iterations (batch 32)")
    p.add_argument("--only", nargs="*", choices=METHODS)
    p.add_argument("--out", default=None, help="default bench_out/local_rules[_dmts]")
    args = p.parse_args(argv)
    if args.task == "digits":
        setup, steps, title = digits_setup(args.T), args.steps or 135, "spike-encoded digits"
    else:
        setup, steps = dmts_setup(args.delay, args.n_eval), args.steps or 150
        title = f"DMTS ({args.delay:g} ms delay)"
    out_dir = args.out or os.path.join("bench_out", "local_rules" + (
        "" if args.task == "digits" else "_dmts"))
    rows = []
    names = args.only or [m for m in METHODS if args.task == "digits" or m != "sbp"]
    progress = common.Progress(len(names))
    for name in names:
        i = progress.start(name)
        if name == "sbp":
            if args.task != "digits":
                raise SystemExit("sbp: a two-phase rule on a static target; digits only")
            n = args.sbp_iterations
            acc, sec, mem, mflop = run_sbp(args.T, n)
        elif name == "decolle":
            n = steps
            acc, sec, mem, mflop = run_decolle(setup, steps)
        else:
            n = steps
            try:
                acc, sec, mem, mflop = run_gradient(name, setup, steps)
            except UnsupportedAlgorithmError as e:     # e.g. OSTL on a recurrent layer
                progress.done(i, f"not applicable: {str(e).splitlines()[0]}")
                rows.append({"method": name, "accuracy": float("nan"), "s_per_sequence":
                             float("nan"), "xla_temp_mib": float("nan"),
                             "mflop_per_sequence": float("nan"), "steps": 0})
                continue
        rows.append({"method": name, "accuracy": acc, "s_per_sequence": sec,
                     "xla_temp_mib": mem, "mflop_per_sequence": mflop, "steps": n})
        progress.done(i, f"accuracy {acc:.3f}, {sec * 1000:.1f} ms/sequence, "
                      f"XLA temp {mem:.2f} MiB, {mflop:.1f} MFLOP/sequence")
    os.makedirs(out_dir, exist_ok=True)
    common.write_csv(os.path.join(out_dir, "local_rules.csv"), rows, FIELDS)
    table = common.md_table(
        ["method", "test accuracy", "sequences", "ms per sequence (median)", "XLA temp (MiB)",
         "MFLOP per sequence"],
        [[r["method"], f"{100 * r['accuracy']:.1f}%", str(r["steps"]),
          f"{1000 * r['s_per_sequence']:.1f}", f"{r['xla_temp_mib']:.2f}",
          f"{r['mflop_per_sequence']:.1f}"] if r["steps"] else [r["method"], "n/a"] + [""] * 4
         for r in rows])
    info = common.device_info()
    lines = common.header_lines(f"Local rules on {title}", info,
                                common.command_line("benchmarks/local_rules.py", argv))
    with open(os.path.join(out_dir, "local_rules.md"), "w") as f:
        f.write("\n".join(lines) + "\n\n" + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
