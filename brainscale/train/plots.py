"""Figures of a run: the learning curve (from ``metrics.jsonl``) and a spike
raster of the trained network on one evaluation sample.

Spikes are found without knowing the model: the hidden state is recorded
over time and every leaf whose values are all 0 or 1 is a spike train (e.g.
the previous-step spikes a recurrent layer carries).
"""
from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["record_hidden", "spike_trains", "plot_learning_curve", "plot_raster", "plot_run"]



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
    """``{path: (T, B, N) array}`` for the hidden leaves that are binary."""
    import jax

    out = {}
    for path, a in jax.tree_util.tree_flatten_with_path(hiddens)[0]:
        a = np.asarray(a)
        if a.ndim >= 2 and np.issubdtype(a.dtype, np.floating) and a.size and \
                np.all((a == 0) | (a == 1)) and a.any():
            out[jax.tree_util.keystr(path)] = a.reshape(a.shape[0], a.shape[1], -1)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(metrics_path: str, png: str, title: str = "") -> str:
    """Training loss per step and evaluation accuracy, one figure."""
    with open(metrics_path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    train = [r for r in recs if r["kind"] == "train"]
    evals = [r for r in recs if r["kind"] == "eval"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in train], [r.get("loss_per_label", r["loss"]) for r in train],
            lw=0.8, color="C0")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss per labelled step", color="C0")
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in evals], [r["accuracy"] for r in evals], "o-", color="C1")
        ax2.set_ylabel("evaluation accuracy", color="C1")
        ax2.set_ylim(0, 1)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, png)
    plt.close(fig)
    return png


def plot_raster(trains: dict, png: str, sample: int = 0, title: str = "") -> str:
    """One panel per spiking population: neuron index against time step."""
    plt = _pyplot()
    n = max(len(trains), 1)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.2 + 1.6 * n), squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], trains.items()):
        t, i = np.nonzero(s[:, sample])
        ax.scatter(t, i, s=1.5, marker="|", color="k")
        ax.set_xlim(0, s.shape[0])
        ax.set_ylim(-0.5, s.shape[2] - 0.5)
        ax.set_ylabel(f"{name}\nneuron", fontsize=7)
    axes[-1, 0].set_xlabel("time step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    _save(fig, png)
    plt.close(fig)
    return png


def plot_run(out_dir: str, task, learner, state, xs) -> dict:
    """``learning_curve.png``, and ``raster.png`` of the trained network on
    the first sample of ``xs`` (T, B, ...)."""
    paths = {"learning_curve": plot_learning_curve(
        os.path.join(out_dir, "metrics.jsonl"), os.path.join(out_dir, "learning_curve.png"),
        title=f"{task.name}")}
    import jax

    hiddens, _ = record_hidden(learner, state.params, jax.device_get(state.hidden0), xs)
    trains = spike_trains(hiddens)
    if trains:
        paths["raster"] = plot_raster(trains, os.path.join(out_dir, "raster.png"),
                                      title=f"{task.name}: sample 0")
    return paths
