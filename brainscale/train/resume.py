"""What a resumed run reads back: the latest usable checkpoint, the metrics
log up to it, and whether its config allows continuing.

A damaged latest checkpoint gives way to the one before it (said, and the
damaged file kept aside); a torn last line of the log (a crash mid-write)
is dropped and said; a config that differs in a key that changes the
trajectory is refused, naming the key.
"""
from __future__ import annotations

import json
import os
import time

from brainscale.train.checkpoint import CheckpointError, load_checkpoint, previous_path
from brainscale.train.config import TrainConfig
from brainscale.train.task import Task

__all__ = ["read_log", "load_latest", "check_resumable", "RESUMABLE_CHANGES"]

# config keys a resumed run may change: they do not alter the trajectory
RESUMABLE_CHANGES = ("steps", "eval_every", "checkpoint_every", "eval_batch_size", "out_dir")


def read_log(path: str, upto: int, log=print) -> list[dict]:
    """The JSON records of a log with ``step <= upto`` (a resumed run drops
    what the interrupted one logged after its checkpoint). A torn last line
    is dropped (and said); a bad line before it is an error naming it."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    recs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if any(rest.strip() for rest in lines[n:]):
                raise CheckpointError(f"{path}: line {n} is not a JSON record ({e}); "
                                      "the log is damaged before its last line") from None
            log(f"{path}: dropped a torn last line ({len(line)} bytes, line {n}): the previous "
                "run stopped while writing it")
            break
        recs.append(rec)
    return [r for r in recs if r.get("step", 0) <= upto]


def load_latest(ckpt: str, template, log):
    """``(state, meta, path read)`` from the latest checkpoint, or, where it
    is missing or damaged, from the one before it (the damaged file is kept
    aside)."""
    prev = previous_path(ckpt)
    try:
        return (*load_checkpoint(ckpt, template), ckpt)
    except (CheckpointError, FileNotFoundError) as e:
        if not os.path.exists(prev):
            raise
        reason = f"{ckpt} is missing" if isinstance(e, FileNotFoundError) else str(e)
    state, meta = load_checkpoint(prev, template)
    if os.path.exists(ckpt):
        aside = f"{ckpt}.damaged-{int(time.time())}"
        os.replace(ckpt, aside)
        reason += f"; kept aside as {aside}"
    log(f"{reason}: resuming from the checkpoint before it ({prev}, step {meta['step']})")
    return state, meta, prev


def check_resumable(saved: dict, cfg: TrainConfig, path: str, task: Task):
    now = cfg.to_dict()
    try:                          # a run from before model options were resolved saved {}
        saved = {**saved, "model": task.resolve_model(saved.get("model"))}
    except ValueError:
        pass                      # reported below as a difference
    diff = sorted(k for k in set(saved) | set(now)
                  if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if diff:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in diff)
        raise CheckpointError(f"{path} was written by a run with a different config ({detail})")
