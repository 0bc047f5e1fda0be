"""``brainscale demo``: ES-D-RTRL next to BPTT on real data, in a few minutes.

A recurrent LIF network (rate-coded 8x8 scikit-learn digits -> recurrent LIF
layer -> leaky readout) is trained with each algorithm from the same
initial weights on the same batches. The label is given in the last third of
the time steps (-1 = no loss before); the prediction is the argmax of the
readout summed over those steps. The demo prints a table (test accuracy,
median ms per training step after compilation, compile time, XLA temporary
memory of the compiled training step, process peak RSS) and writes
``demo.png`` (test accuracy per epoch) and ``results.json`` to ``out_dir``.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["DemoConfig", "run_demo", "make_model", "label_sequence", "format_table"]


@dataclass(frozen=True)
class DemoConfig:
    T: int = 24               # time steps per sample
    n_rec: int = 128          # recurrent LIF neurons
    batch_size: int = 64
    epochs: int = 10
    lr: float = 4e-3
    decay: float = 0.9        # ES-D-RTRL's alpha
    max_rate: float = 0.5     # spike probability per step of a white pixel
    tau_mem: float = 10.0     # ms, dt = 1 ms
    tau_out: float = 10.0
    w_in_scale: float = 4.0
    w_rec_scale: float = 1.0
    label_fraction: float = 1 / 3   # loss (and readout) on the last third of the steps
    max_train_steps: int | None = None   # per epoch; None = whole training set
    max_test: int | None = None


FULL = DemoConfig()
QUICK = DemoConfig(T=10, n_rec=32, batch_size=32, epochs=1, max_train_steps=4, max_test=128)


def make_model(cfg: DemoConfig, seed: int):
    """The demo network as a flax.nnx module (per-sample shapes)."""
    from flax import nnx

    from brainscale.nn.neurons import LIF
    from brainscale.nn.projections import Recurrent
    from brainscale.nn.readout import LeakyReadout

    class DigitNet(nnx.Module):
        def __init__(self, rngs):
            self.rec = Recurrent(64, cfg.n_rec, LIF(cfg.n_rec, tau=cfg.tau_mem), rngs=rngs,
                                 w_in_scale=cfg.w_in_scale, w_rec_scale=cfg.w_rec_scale)
            self.out = LeakyReadout(cfg.n_rec, 10, tau=cfg.tau_out, rngs=rngs)

        def __call__(self, x):
            return self.out(self.rec(x))

    return DigitNet(nnx.Rngs(seed))


def label_sequence(y, T: int, label_fraction: float):
    """(T, B) int32 labels: -1 for the first steps, ``y`` for the last
    ``ceil(label_fraction * T)`` steps."""
    n_lab = max(1, int(np.ceil(label_fraction * T)))
    ys = np.full((T, len(y)), -1, dtype=np.int32)
    ys[T - n_lab:] = np.asarray(y, dtype=np.int32)[None]
    return ys


def _peak_rss_mib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def format_table(rows) -> str:
    headers = ["algorithm", "test accuracy", "ms / train step (median)", "compile s",
               "XLA temp MiB", "peak RSS MiB"]
    body = [[r["algorithm"], f"{r['test_accuracy']:.3f}", f"{r['ms_per_step_median']:.1f}",
             f"{r['compile_s']:.1f}",
             "n/a" if r["xla_temp_mib"] is None else f"{r['xla_temp_mib']:.2f}",
             f"{r['peak_rss_mib']:.0f}"] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(b) for b in body])


def _train_one(algorithm, cfg, data, seed, log):
    import jax
    import jax.numpy as jnp
    import optax

    import brainscale as bs
    from brainscale.cli.progress import ProgressBar
    from brainscale.tasks import batches, rate_encode

    x_tr, y_tr, x_te, y_te = data
    T, B = cfg.T, cfg.batch_size
    n_lab = max(1, int(np.ceil(cfg.label_fraction * T)))
    kw = {"decay": cfg.decay} if algorithm == "es_d_rtrl" else {}
    learner = bs.online(make_model(cfg, seed), algorithm=algorithm,
                        optimizer=optax.adam(cfg.lr), **kw)
    encode = jax.jit(lambda imgs, key: rate_encode(imgs, T, key, max_rate=cfg.max_rate))

    state = learner.init(jax.random.PRNGKey(seed), jnp.zeros((B, 64), jnp.float32))
    ex_xs = encode(jnp.asarray(x_tr[:B]), jax.random.PRNGKey(0))
    ex_ys = jnp.asarray(label_sequence(y_tr[:B], T, cfg.label_fraction))

    t0 = time.perf_counter()
    compiled = learner.train_sequence.lower(state, ex_xs, ex_ys).compile()
    compile_s = time.perf_counter() - t0
    try:
        mem = compiled.memory_analysis()
        temp_mib = None if mem is None else mem.temp_size_in_bytes / 2 ** 20
    except Exception:  # some backends do not report it
        temp_mib = None

    # evaluation: the whole (or capped) test set in fixed-size chunks
    n_test = len(x_te) if cfg.max_test is None else min(cfg.max_test, len(x_te))
    x_te, y_te = x_te[:n_test], y_te[:n_test]
    n_pad = (-n_test) % B
    x_te_pad = np.concatenate([x_te, np.zeros((n_pad, 64), np.float32)])
    test_keys = jax.random.split(jax.random.PRNGKey(10_000 + seed), len(x_te_pad) // B)

    @jax.jit
    def predict_chunk(state, imgs, key):
        outs = learner.predict(state, encode(imgs, key))       # (T, B, 10)
        return jnp.argmax(outs[T - n_lab:].sum(0), axis=-1)

    def accuracy(state):
        preds = [np.asarray(predict_chunk(state, jnp.asarray(x_te_pad[i * B:(i + 1) * B]), k))
                 for i, k in enumerate(test_keys)]
        return float(np.mean(np.concatenate(preds)[:n_test] == y_te))

    steps_per_epoch = len(x_tr) // B
    if cfg.max_train_steps is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_train_steps)
    total = steps_per_epoch * cfg.epochs
    step_ms, losses, acc_curve = [], [], []
    key = jax.random.PRNGKey(1_000 + seed)
    bar = ProgressBar(total, desc=f"{algorithm:>9}", compiled=True)   # compiled above
    for epoch in range(cfg.epochs):
        it = batches(x_tr, y_tr, B, rng=np.random.default_rng([seed, epoch]), drop_last=True)
        for i, (xb, yb) in enumerate(it):
            if i >= steps_per_epoch:
                break
            key, sub = jax.random.split(key)
            xs = encode(jnp.asarray(xb), sub)
            ys = jnp.asarray(label_sequence(yb, T, cfg.label_fraction))
            xs.block_until_ready()
            t0 = time.perf_counter()
            state, metrics = compiled(state, xs, ys)
            loss = float(metrics["loss"])           # waits for the step
            step_ms.append((time.perf_counter() - t0) * 1e3)
            losses.append(loss)
            bar.update(1, loss=loss)
        acc_curve.append(accuracy(state))
    bar.close()
    log(f"{algorithm}: test accuracy per epoch "
        + " ".join(f"{a:.3f}" for a in acc_curve))
    return {
        "algorithm": algorithm,
        "test_accuracy": acc_curve[-1],
        "accuracy_per_epoch": acc_curve,
        "ms_per_step_median": float(np.median(step_ms)),
        "compile_s": compile_s,
        "xla_temp_mib": temp_mib,
        "peak_rss_mib": _peak_rss_mib(),
        "train_loss": losses,
        "graph": str(learner.graph_for(ex_xs[0])),
    }


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in results:
        acc = r["accuracy_per_epoch"]
        ax.plot(np.arange(1, len(acc) + 1), acc, marker="o", label=r["algorithm"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Recurrent LIF on rate-coded digits")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo(out_dir="demo_out", epochs=None, quick=False,
             algorithms=("es_d_rtrl", "bptt"), seed=0, log=print):
    """Train and compare; returns the results dict written to results.json."""
    import jax

    from brainscale.tasks import load_digits_split

    cfg = QUICK if quick else FULL
    if epochs is not None:
        if epochs < 1:
            raise ValueError("epochs must be >= 1")
        cfg = DemoConfig(**{**asdict(cfg), "epochs": int(epochs)})
    algorithms = list(algorithms)
    import brainscale as bs

    unknown = [a for a in algorithms if a not in bs.ALGORITHMS]
    if unknown:
        raise ValueError(f"unknown algorithm(s) {unknown}; choose from {sorted(bs.ALGORITHMS)}")
    os.makedirs(out_dir, exist_ok=True)

    data = load_digits_split(test_fraction=0.2, seed=seed)
    log(f"BrainScale demo: {len(data[0])} train / {len(data[2])} test digits, "
        f"T={cfg.T}, {cfg.n_rec} recurrent LIF, batch {cfg.batch_size}, {cfg.epochs} epoch(s), "
        f"jax {jax.__version__} on {jax.default_backend()}")
    results = []
    t_start = time.perf_counter()
    for algo in algorithms:
        results.append(_train_one(algo, cfg, data, seed, log))
    wall = time.perf_counter() - t_start

    log("")
    log(format_table(results))
    log(f"(total {wall:.0f} s; peak RSS is the process maximum so far, "
        "so it is cumulative across rows)")

    png = os.path.join(out_dir, "demo.png")
    _plot(results, png)
    out = {
        "config": asdict(cfg),
        "quick": bool(quick),
        "seed": seed,
        "wall_s": wall,
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "backend": jax.default_backend(), "platform": platform.platform()},
        "results": results,
    }
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(out, f, indent=2)
    log(f"wrote {png} and {os.path.join(out_dir, 'results.json')}")
    return out
