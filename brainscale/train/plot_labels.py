"""The words on a run's figures: titles, population names, time units.

Pure functions (no matplotlib), so what a figure says is tested without
looking at pixels.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ALGORITHM_LABELS", "algorithm_label", "run_title", "path_keys", "path_name",
           "population_name", "neuron_kind", "step_ms", "trial_summary", "time_label"]

ALGORITHM_LABELS = {"es_d_rtrl": "ES-D-RTRL", "d_rtrl": "D-RTRL", "e_prop": "e-prop",
                    "ostl": "OSTL", "bptt": "BPTT", "tbptt": "TBPTT",
                    "low_rank_d_rtrl": "low-rank D-RTRL"}
OPTION_LABELS = {"low_rank_d_rtrl": " (rank {})"}    # others: "-{}", as TBPTT-50


def algorithm_label(name: str) -> str:
    """The usual spelling of an algorithm (``es_d_rtrl`` -> ``ES-D-RTRL``,
    ``tbptt:50`` -> ``TBPTT-50``, ``low_rank_d_rtrl:4`` -> ``low-rank D-RTRL (rank 4)``)."""
    base, colon, option = name.partition(":")
    return ALGORITHM_LABELS.get(base, base) + (
        OPTION_LABELS.get(base, "-{}").format(option) if colon else "")


def run_title(task: str, algorithm: str | None) -> str:
    """``"digits / ES-D-RTRL"``: which task, trained by which algorithm."""
    return f"{task} / {algorithm_label(algorithm)}" if algorithm else task


def path_keys(path) -> tuple:
    """A jax key path as plain keys: ``(DictKey('layers'), SequenceKey(0))``
    -> ``('layers', 0)``."""
    out = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
        else:
            out.append(str(k))
    return tuple(out)


def path_name(keys) -> str:
    """``('layers', 0, 'spk')`` -> ``"layers[0].spk"``."""
    text = ""
    for k in keys:
        if isinstance(k, int) and not isinstance(k, bool):
            text += f"[{k}]"
        else:
            text += f".{k}" if text else str(k)
    return text


def population_name(keys, size: int, kind: str | None = None) -> str:
    """A spiking population's label: ``('layers', 0, 'spk')`` of 128 LIF
    neurons -> ``"layer 1 (LIF, 128)"``; another path keeps its dotted form
    (``"pop.spk (LIF, 128)"``)."""
    keys = tuple(keys)
    if (len(keys) == 3 and isinstance(keys[0], str) and keys[0].endswith("s")
            and isinstance(keys[1], int) and keys[2] == "spk"):
        name = f"{keys[0][:-1]} {keys[1] + 1}"
    else:
        name = path_name(keys)
    return f"{name} ({kind}, {size})" if kind else f"{name} ({size})"


def neuron_kind(module, keys) -> str | None:
    """The class name of the neuron that holds the hidden leaf at ``keys``
    in ``module`` (the owner itself, or its ``.neuron``); None where the
    path does not lead through the module."""
    obj = module
    try:
        for k in tuple(keys)[:-1]:
            obj = obj[k] if isinstance(k, int) else getattr(obj, k)
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    obj = getattr(obj, "neuron", obj)
    return None if obj is module else type(obj).__name__


def step_ms(task_options: dict, model_options: dict | None = None) -> float | None:
    """Milliseconds per time step where known: the task's ``dt`` (ms), its
    frames' ``time_window`` (us), or a ``dt`` set in the model options."""
    for value, scale in ((task_options.get("dt"), 1.0),
                         (task_options.get("time_window"), 1e-3),
                         ((model_options or {}).get("dt"), 1.0)):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value) * scale
    return None


def time_label(dt_ms: float | None) -> str:
    """The time axis: steps, with their length where known."""
    return f"time step ({dt_ms:g} ms each)" if dt_ms else "time step"


def trial_summary(ys, outputs, metric: str = "trial") -> str:
    """What one sample was asked and answered: ``ys`` (T,) labels (-1 = not
    scored), ``outputs`` (T, C) logits. ``"trial"``: ``"label 1, predicted
    1"`` (the argmax of the logits summed over the labelled steps);
    ``"step"``: ``"7/9 labelled steps right"``."""
    ys = np.asarray(ys)
    out = np.asarray(outputs, dtype=np.float64)
    mask = ys >= 0
    if not mask.any():
        return "no labelled step"
    if metric == "step":
        right = int(np.sum(out.argmax(-1)[mask] == ys[mask]))
        return f"{right}/{int(mask.sum())} labelled steps right"
    label = int(ys[mask][0])
    pred = int(out[mask].sum(0).argmax())
    return f"label {label}, predicted {pred}"
