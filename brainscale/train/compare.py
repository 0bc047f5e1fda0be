"""One training run per algorithm on the same task, seed and batches,
for the side-by-side examples and benchmarks (DMTS, copy, MNIST, TBPTT).

``run_algorithm`` wraps ``fit``: it starts from an empty run folder (or,
with ``resume``, continues the run there from its last checkpoint: one is
written at each evaluation), keeps the log quiet, and returns the run's
records with the median time per training step (the first step, which
compiles, left out) and the compiled program's memory (``program_memory``:
XLA's own figures for one ``train_sequence``, read without running it, so
they do not depend on the machine's load).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

import numpy as np

from brainscale.train.checkpoint import previous_path
from brainscale.train.config import TrainConfig
from brainscale.train.runner import CHECKPOINT, METRICS_LOG, fit
from transforms.learning.algorithm_specs import parse_spec

__all__ = ["Run", "RunInterrupted", "run_algorithm", "program_memory", "read_log",
           "parse_algorithm", "learner_options", "save_results"]


def parse_algorithm(spec: str):
    """An algorithm as a side-by-side run names it: ``"tbptt:50"`` ->
    ("tbptt", {"k": 50}); ``"es_d_rtrl:adaptive"`` -> ("es_d_rtrl",
    {"adaptive": True}); ``"es_d_rtrl"`` -> ("es_d_rtrl", {}). The forms:
    ``transforms.learning.algorithm_specs``."""
    import brainscale

    return parse_spec(spec, brainscale.ALGORITHMS)


def learner_options(spec: str, decay: float) -> tuple[str, dict]:
    """(algorithm name, its ``bs.online`` options) for ``spec``; ES-D-RTRL
    gets ``decay``, the others their own options only."""
    name, opts = parse_algorithm(spec)
    return name, ({"decay": decay} | opts if name == "es_d_rtrl" else opts)


@dataclasses.dataclass
class Run:
    """What one ``run_algorithm`` call measured."""
    algorithm: str
    config: TrainConfig
    result: dict                 # fit's summary (status, final, history, learner, state)
    train: list                  # the metrics log's "train" records
    evals: list                  # its "eval" records
    ms_per_step: float
    wall_s: float                # this call's time (a resumed run's later part only)
    resumed_from: int | None = None

    @property
    def final_accuracy(self) -> float:
        return self.result["final"]["accuracy"]

    @property
    def best_accuracy(self) -> float:
        return max(r["accuracy"] for r in self.evals)


class RunInterrupted(RuntimeError):
    """A side-by-side run stopped by SIGINT / SIGTERM: its checkpoint is kept,
    and the script's ``--resume`` continues it."""


def read_log(run_dir):
    """(train records, eval records) of a run's metrics log."""
    with open(os.path.join(run_dir, METRICS_LOG)) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return ([r for r in recs if r["kind"] == "train"], [r for r in recs if r["kind"] == "eval"])


def _printer(prefix: str):
    """Lines said during a run, printed above a terminal's progress bar."""
    from tqdm import tqdm

    return lambda s: tqdm.write(f"{prefix} {s}")


def run_algorithm(task, task_name: str, algorithm: str, out_dir, *, steps: int,
                  batch_size: int, lr: float, eval_every: int | None = None,
                  model: dict | None = None, learner: dict | None = None, seed: int = 0,
                  optimizer: str = "adam", lr_schedule: str = "constant",
                  progress: bool = False, resume: bool = False) -> Run:
    """Train ``algorithm`` on ``task`` into ``out_dir``: a fresh run (an older
    one there is removed: ``fit`` refuses to overwrite one) or, with
    ``resume`` and a checkpoint there, that run continued (a finished one is
    read back; ``fit`` refuses a checkpoint of another configuration). A
    checkpoint is saved at each evaluation; a run stopped by a signal raises
    ``RunInterrupted``. With ``progress`` the bar is shown and each held-out
    evaluation printed as it comes."""
    ckpt = os.path.join(out_dir, CHECKPOINT)
    resume = resume and any(os.path.exists(p) for p in (ckpt, previous_path(ckpt)))
    if not resume and os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    cfg = TrainConfig(task=task_name, task_options=dict(task.options),
                      model=dict(model or {}), algorithm=algorithm,
                      learner=dict(learner or {}), optimizer=optimizer,
                      lr=lr, lr_schedule=lr_schedule, batch_size=batch_size, steps=steps,
                      eval_every=eval_every,
                      checkpoint_every=min(eval_every, steps) if eval_every else
                      max(1, steps // 10), seed=seed, out_dir=str(out_dir))
    say = _printer(f"{task_name}/{algorithm}") if progress else lambda s: None
    t0 = time.perf_counter()
    res = fit(cfg, task=task, progress=progress, plots=False, log=say, resume=resume)
    wall = time.perf_counter() - t0
    if res["status"] != "completed":
        raise RunInterrupted(f"{task_name}/{algorithm} stopped by signal {res['signal']} after "
                             f"step {res['step']}; its checkpoint is in {out_dir}: run the "
                             "same command with --resume to continue")
    train, evals = read_log(out_dir)
    secs = [r["seconds"] for r in train[1:]] or [r["seconds"] for r in train]
    return Run(algorithm, cfg, res, train, evals, 1e3 * float(np.median(secs)), wall,
               resumed_from=res["resumed_from"])


def program_memory(run: Run, xs, ys) -> dict:
    """XLA's memory figures (MiB) for one ``train_sequence`` of ``run``'s
    learner on a batch shaped like ``xs`` (T, B, ...): ``temp`` (scratch,
    what grows with T for BPTT) and ``total`` (arguments + outputs + temp,
    aliased outputs counted once)."""
    learner, state = run.result["learner"], run.result["state"]
    mem = learner.train_sequence.lower(state, xs, ys).compile().memory_analysis()
    mib = 2.0 ** 20
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes
             - mem.alias_size_in_bytes + mem.temp_size_in_bytes)
    return {"temp": mem.temp_size_in_bytes / mib, "total": total / mib}


def save_results(out_dir, args, rows) -> str:
    """``results.json`` in ``out_dir``: the script's arguments and its rows."""
    path = os.path.join(out_dir, "results.json")
    with open(path, "w") as f:
        json.dump({"args": vars(args), "results": rows}, f, indent=1)
    return path
