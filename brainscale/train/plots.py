"""Figures of a run: the learning curve (from ``metrics.jsonl``: training
and evaluation loss, evaluation accuracy) and a raster of the trained
network on one evaluation sample (its input above the spikes of each
population). The words on them come from ``plot_labels``.

Spikes are found without knowing the model: the hidden state is recorded
over time and every leaf whose values are all 0 or 1 is a spike train (e.g.
the previous-step spikes a recurrent layer carries).
"""
from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["record_hidden", "spike_trains", "plot_learning_curve", "plot_raster", "plot_run",
           "plot_accuracy_curves", "pyplot", "save_figure"]


def _save(fig, path):
    """PNG bytes written atomically: a symlink planted at ``path`` is
    replaced, never followed."""
    import io

    from brainscale.train.checkpoint import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write(path, buf.getvalue())


def record_hidden(learner, params, hidden0, xs):
    """Hidden states ``(T, B, ...)`` per leaf and outputs ``(T, B, ...)`` of
    the model run from ``hidden0`` (per sample) on ``xs`` (T, B, ...)."""
    import jax
    import jax.numpy as jnp

    apply = learner.model.apply
    B = jax.tree_util.tree_leaves(xs)[0].shape[1]
    h0 = jax.tree.map(lambda h: jnp.broadcast_to(h, (B,) + jnp.shape(h)), hidden0)

    @jax.jit
    def run(params, h0, xs):
        def body(h, x):
            h, y = jax.vmap(apply, in_axes=(None, 0, 0))(params, h, x)
            return h, (h, y)
        return jax.lax.scan(body, h0, xs)[1]

    return run(params, h0, xs)


def spike_trains(hiddens) -> dict:
    """``{keys: (T, B, N) array}`` for the hidden leaves that are binary and
    spike at least once; ``keys`` is the leaf's path as plain keys."""
    import jax

    from brainscale.train.plot_labels import path_keys

    out = {}
    for path, a in jax.tree_util.tree_flatten_with_path(hiddens)[0]:
        a = np.asarray(a)
        if a.ndim >= 2 and np.issubdtype(a.dtype, np.floating) and a.size and \
                np.all((a == 0) | (a == 1)) and a.any():
            out[path_keys(path)] = a.reshape(a.shape[0], a.shape[1], -1)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


pyplot = _pyplot


def save_figure(fig, path):
    """``fig`` laid out, written atomically as PNG, and closed."""
    fig.tight_layout()
    _save(fig, path)
    _pyplot().close(fig)


def plot_accuracy_curves(rows, png: str, title: str = "", ylabel: str = "test accuracy",
                         ylim=None, hline=None):
    """Accuracy at each evaluation, one line per algorithm (rows with
    ``algorithm``, ``eval_step``, ``eval_accuracy``); ``hline``: (value,
    label) of a dashed reference line."""
    from brainscale.train.plot_labels import algorithm_label

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in rows:
        ax.plot(r["eval_step"], r["eval_accuracy"], marker="o", ms=3,
                label=algorithm_label(r["algorithm"]))
    if hline is not None:
        ax.axhline(hline[0], color="k", ls="--", lw=0.8, label=hline[1])
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, png)


def _num(v):
    return float("nan") if v is None else float(v)


def plot_learning_curve(metrics_path: str, png: str, title: str = "",
                        chance: float | None = None) -> str:
    """Two panels against the training step: the training loss per labelled
    step with the evaluation loss, and the evaluation accuracy (``chance``,
    if given, as a dashed line)."""
    with open(metrics_path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    train = [r for r in recs if r["kind"] == "train"]
    evals = [r for r in recs if r["kind"] == "eval"]
    plt = _pyplot()
    fig, (ax, acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax.plot([r["step"] for r in train],
            [_num(r.get("loss_per_label", r["loss"])) for r in train],
            lw=0.8, color="C0", label="training")
    if evals:
        steps = [r["step"] for r in evals]
        ax.plot(steps, [_num(r.get("loss")) for r in evals], "o-", ms=3, color="C1",
                label="evaluation")
        acc.plot(steps, [_num(r["accuracy"]) for r in evals], "o-", ms=3, color="C1",
                 label="evaluation")
    if chance is not None:
        acc.axhline(chance, ls="--", lw=0.8, color="0.5", label="chance")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy per labelled step")
    ax.legend(fontsize=7)
    acc.set_xlabel("training step")
    acc.set_ylabel("evaluation accuracy")
    acc.set_ylim(0, 1.02)
    acc.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, png)
    plt.close(fig)
    return png


def _labelled_spans(ys):
    """``[(start, stop)]`` of the runs of labelled steps in ``ys`` (T,)."""
    m = np.concatenate([[False], np.asarray(ys) >= 0, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(m))
    return list(zip(edges[::2], edges[1::2]))


def plot_raster(trains: dict, png: str, sample: int = 0, title: str = "", inputs=None,
                ys=None, dt_ms: float | None = None) -> str:
    """The input (``inputs`` (T, B, ...), optional) above one panel per
    spiking population (``{label: (T, B, N)}``): neuron index against time
    step, for ``sample``. Steps with a label (``ys`` (T, B)) are shaded; a
    known ``dt_ms`` adds a time axis in ms on top."""
    plt = _pyplot()
    panels = ([("input", np.asarray(inputs)[:, sample].reshape(np.shape(inputs)[0], -1))]
              if inputs is not None else [])
    panels += [(name, np.asarray(s)[:, sample]) for name, s in trains.items()]
    n = max(len(panels), 1)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.2 + 1.6 * n), squeeze=False, sharex=True)
    spans = _labelled_spans(np.asarray(ys)[:, sample]) if ys is not None else []
    for ax, (name, s) in zip(axes[:, 0], panels):
        binary = np.all((s == 0) | (s == 1))
        if binary:
            t, i = np.nonzero(s)
            size = float(np.clip(3000 / s.shape[0], 2, 40))     # ticks visible at small T
            ax.scatter(t, i, s=size, marker="|", color="k", lw=0.8)
        else:           # rates or event counts: a grey-level image
            ax.imshow(s.T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
                      extent=(-0.5, s.shape[0] - 0.5, -0.5, s.shape[1] - 0.5))
        for a, b in spans:
            ax.axvspan(a - 0.5, b - 0.5, color="C1", alpha=0.12, lw=0)
        ax.set_xlim(-0.5, s.shape[0] - 0.5)
        ax.set_ylim(-0.5, s.shape[1] - 0.5)
        ax.set_ylabel(f"{name}\nneuron" if name != "input" else f"input ({s.shape[1]})\n"
                      "channel", fontsize=7)
    from brainscale.train.plot_labels import time_label

    axes[-1, 0].set_xlabel(time_label(dt_ms) + ("; shaded: labelled steps" if spans else ""))
    if dt_ms:
        top = axes[0, 0].secondary_xaxis("top", functions=(lambda t: t * dt_ms,
                                                           lambda ms: ms / dt_ms))
        top.set_xlabel("time (ms)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, png)
    plt.close(fig)
    return png


def plot_run(out_dir: str, task, learner, state, cfg) -> dict:
    """``learning_curve.png`` from the run's metrics log, and ``raster.png``:
    the trained network on the first sample of the evaluation set (its
    input, the spikes of each population, its label and the prediction)."""
    import jax
    import jax.numpy as jnp

    from brainscale.train import plot_labels as L

    title = L.run_title(task.name, cfg.algorithm)
    chance = 1.0 / task.n_out if task.n_out > 1 else None
    paths = {"learning_curve": plot_learning_curve(
        os.path.join(out_dir, "metrics.jsonl"), os.path.join(out_dir, "learning_curve.png"),
        title=f"{title}: {cfg.steps} steps, batch {cfg.batch_size}", chance=chance)}
    xs, ys = next(iter(task.eval_batches(cfg.eval_batch_size or cfg.batch_size)))
    xs, ys = np.asarray(xs)[:, :1], np.asarray(ys)[:, :1]
    hiddens, outs = record_hidden(learner, state.params, jax.device_get(state.hidden0),
                                  jnp.asarray(xs))
    trains = spike_trains(hiddens)
    model_options = {**task.model_defaults, **cfg.model}
    module = task.make_model(model_options, cfg.seed) if trains else None   # neuron kinds
    named = {L.population_name(k, s.shape[-1], L.neuron_kind(module, k)): s
             for k, s in trains.items()}
    what = L.trial_summary(ys[:, 0], np.asarray(outs)[:, 0], task.metric)
    paths["raster"] = plot_raster(
        named, os.path.join(out_dir, "raster.png"), inputs=xs, ys=ys,
        dt_ms=L.step_ms(task.options, model_options),
        title=f"{title}: evaluation sample 0, {what}")
    return paths
