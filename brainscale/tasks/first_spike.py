"""Time-to-first-spike analysis of recorded spike trains.

For spikes ``z`` of shape (T, B, N) the first-spike time of neuron ``n`` in
trial ``b``, counted from step ``start``, is

    t_first[b, n] = dt * min{ t - start : t >= start, z[t, b, n] > 0 }

and NaN when the neuron is silent from ``start`` on. The plot shows these
times per condition (e.g. the trial's label): neurons on the y axis, sorted
by their mean first-spike time over all trials, so a time-to-first-spike
code appears as a diagonal band whose order differs between conditions.
"""
from __future__ import annotations

import numpy as np

__all__ = ["first_spike_times", "sort_by_first_spike", "plot_first_spikes"]


def first_spike_times(spikes, dt: float = 1.0, start: int = 0) -> np.ndarray:
    """(B, N) float64 first-spike times in the units of ``dt`` counted from
    step ``start`` (NaN where there is no spike at or after ``start``)."""
    z = np.asarray(spikes)
    if z.ndim != 3:
        raise ValueError(f"spikes must have shape (T, B, N), got {z.shape}")
    if not 0 <= int(start) <= z.shape[0]:
        raise ValueError(f"start {start} is outside 0..{z.shape[0]}")
    z = z[int(start):] > 0
    fired = z.any(0)
    first = np.argmax(z, axis=0).astype(np.float64) * float(dt)
    return np.where(fired, first, np.nan)


def sort_by_first_spike(times) -> tuple[np.ndarray, np.ndarray]:
    """``(order, mean)``: the neurons that spiked in at least one trial,
    ordered by their mean first-spike time over the trials where they did
    (ties by index), and those means (in that order)."""
    t = np.asarray(times, dtype=np.float64)
    fired = ~np.isnan(t)
    count = fired.sum(0)
    mean = np.where(count > 0, np.where(fired, t, 0.0).sum(0) / np.maximum(count, 1), np.inf)
    order = np.lexsort((np.arange(t.shape[1]), mean))
    order = order[np.isfinite(mean[order])]
    return order, mean[order]


def plot_first_spikes(times, conditions, path: str, *, names=None, title=None,
                      max_trials: int = 200) -> str:
    """Save a raster-like figure of first-spike times to ``path`` (png).

    One panel per value of ``conditions`` (B,) (``names`` label them, e.g.
    ``{0: "left", 1: "right"}``). Every dot is one trial's first spike of a
    neuron (at most ``max_trials`` trials per panel); the black line is the
    neuron's mean over the panel's trials. The neuron order, from the mean
    over all trials, is the same in every panel. Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.asarray(times, dtype=np.float64)
    cond = np.asarray(conditions).reshape(-1)
    if cond.shape[0] != t.shape[0]:
        raise ValueError(f"{cond.shape[0]} conditions for {t.shape[0]} trials")
    order, _ = sort_by_first_spike(t)
    values = np.unique(cond)
    names = dict(names or {})
    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 4.5), sharey=True,
                             squeeze=False)
    rank = np.arange(len(order))
    for ax, v in zip(axes[0], values):
        sel = t[cond == v][:, order]
        for row in sel[:max_trials]:
            ok = ~np.isnan(row)
            ax.plot(row[ok], rank[ok], ".", ms=1.5, alpha=0.25, color="tab:blue")
        with np.errstate(all="ignore"):
            cnt = (~np.isnan(sel)).sum(0)
            m = np.where(cnt > 0, np.nansum(sel, 0) / np.maximum(cnt, 1), np.nan)
        ax.plot(m, rank, "-", color="black", lw=1.0, label="mean")
        ax.set_title(f"{names.get(v, v)} ({int(np.sum(cond == v))} trials)")
        ax.set_xlabel("first-spike time")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"neuron (sorted by mean first-spike time; {len(order)} of "
                          f"{t.shape[1]} spiked)")
    axes[0][0].legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
