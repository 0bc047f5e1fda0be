"""``fit(config)``: a training run that evaluates, logs, checkpoints and resumes.

Per step: the task's batch for ``(seed, step)`` is checked, the learner
trains on it (``train_sequence``: reset, gradient over the sequence, one
optimizer update), and a JSON line goes to ``metrics.jsonl``. The fixed
evaluation set is scored before training (step 0), every
``cfg.eval_interval`` steps and at the end (``evaluation.eval_due``). Every
``checkpoint_every`` steps, at the end, and on SIGINT/SIGTERM, the learner
state is saved atomically; ``resume=True`` loads it and continues with the
very batches the interrupted run would have seen, so the result is bit for
bit that of an uninterrupted run.

Nothing is lost or kept silently: the run folder is locked for the life of
a run; a step whose loss, gradient norm or new state (parameters, optimizer
state, hidden state, traces) holds NaN or inf stops the run, naming the step
and the first such leaf, with the last good checkpoint left on disk; a
resume from a damaged latest checkpoint falls back to the one before it
(said, and the damaged file kept aside), and a torn last line of the metrics
log (a crash mid-write) is dropped and said. Non-finite numbers in the log
are written as ``null``.

After ``jax.distributed.initialize`` (``brainscale.train.distributed``) the
same ``fit`` in every process trains one model: the batch is split over all
processes' devices and process 0 alone writes the run folder.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import ExitStack, contextmanager, nullcontext

import numpy as np

from brainscale.train import distributed
from brainscale.train.batches import check_batch, loss_per_label
from brainscale.train.callbacks import call
from brainscale.train.checkpoint import atomic_write, previous_path, save_checkpoint
from brainscale.train.config import TrainConfig
from brainscale.train.evaluation import eval_due, evaluate
from brainscale.train.finite import first_nonfinite, json_record
from brainscale.train.resume import RESUMABLE_CHANGES, check_resumable, load_latest, read_log
from brainscale.train.run_lock import run_lock
from brainscale.train.task import Task

__all__ = ["fit", "build", "evaluate", "CHECKPOINT", "METRICS_LOG", "RESUMABLE_CHANGES"]

CHECKPOINT = "checkpoint.msgpack"
METRICS_LOG = "metrics.jsonl"


def _optimizer(cfg: TrainConfig):
    import optax

    lr = cfg.lr if cfg.lr_schedule == "constant" else optax.cosine_decay_schedule(
        cfg.lr, cfg.steps)
    opt = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd,
           "rmsprop": optax.rmsprop}[cfg.optimizer](lr)
    if cfg.grad_clip is not None:
        opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt


def build(cfg: TrainConfig, task: Task | None = None):
    """``(task, learner, state)`` for a config, before any training."""
    import jax
    import jax.numpy as jnp

    import brainscale as bs
    from brainscale.train.registry import make_task

    if task is None:
        task = make_task(cfg.task, cfg.task_options)
    options = task.resolve_model(cfg.model)
    try:
        model = task.make_model(options, cfg.seed)
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise ValueError(f"config key 'model' ({json.dumps(cfg.model)}): {e}") from None
    try:
        # every batch is checked by check_batch below: the learner need not check again
        learner = bs.online(model, cfg.algorithm, _optimizer(cfg),
                            **{"check": False, **cfg.learner})
    except TypeError as e:
        raise ValueError(f"config key 'learner': {e}") from None
    xs, ys = task.train_batch(cfg.seed, 0, cfg.batch_size)
    check_batch(xs, ys, n_out=task.n_out, batch_size=cfg.batch_size, where="step 0")
    state = learner.init(jax.random.PRNGKey(cfg.seed), jnp.asarray(np.asarray(xs)[0]))
    return task, learner, state


class _Stop:
    signum: int | None = None


@contextmanager
def _graceful_signals(stop: _Stop):
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after this step; a
    second SIGINT interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.signum = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def fit(config: TrainConfig, task: Task | None = None, resume: bool = False, log=print,
        progress: bool = True, plots: bool = True, callbacks=()) -> dict:
    """Train per ``config`` into ``config.out_dir`` (default ``runs/<task>``);
    returns a summary dict.

    Each of ``config.steps`` steps trains on the task's batch for
    ``(seed, step)``: inputs ``xs`` (T, B, ...) and labels ``ys`` (T, B) with
    B = ``config.batch_size`` (-1: no loss at that step), one
    ``train_sequence`` per batch. ``task``: a ``Task`` of your own instead of the registered
    ``config.task``. ``resume``: continue the run whose checkpoint is in
    ``out_dir``, bit for bit. ``log``: where progress lines go; ``progress``:
    a progress bar; ``plots``: write ``learning_curve.png`` and ``raster.png``.
    ``callbacks``: objects with any of ``on_step``, ``on_eval``,
    ``on_checkpoint``, ``on_end`` (``brainscale.train.callbacks``; e.g.
    ``TensorBoard(log_dir)``).

    In a distributed run (``jax.distributed.initialize`` first) every process
    calls ``fit`` with the same arguments; the batch is split over all their
    devices, and only process 0 logs, calls ``callbacks``, plots and writes.

    Keys of the result: ``status`` ("completed" or "interrupted"), ``step``,
    ``resumed_from`` (the checkpoint's step, or None), ``final`` (the last
    evaluation: ``accuracy``, ``loss``...), ``history`` (all evaluations),
    ``out_dir``, ``checkpoint``, ``placement`` (devices and processes the
    batch was split over, or None), ``signal`` (the one that stopped it, or
    None), and the live ``task``, ``learner`` and ``state``.

        cfg = TrainConfig(task="digits", steps=200, out_dir="runs/digits")
        result = fit(cfg)
        print(result["final"]["accuracy"])
    """
    from brainscale.train.registry import make_task

    cfg = config
    out = cfg.run_dir
    if task is None:            # a bad task, model or option fails before any folder exists
        task = make_task(cfg.task, cfg.task_options)
    cfg = cfg.replace(model=task.resolve_model(cfg.model))    # config.json records every value
    built = build(cfg, task)
    distributed.check_same_config(cfg)
    mesh = _mesh(cfg)               # a batch that does not split fails before any folder exists
    if not distributed.is_leader():     # process 0 alone logs, reports and writes the folder
        log, progress, plots, callbacks = (lambda *a: None), False, False, ()
    try:
        with ExitStack() as held:
            opened = distributed.on_leader(lambda: _open_run(cfg, built, resume, log, held))
            return _train(cfg, built, mesh, opened, resume, log, progress, plots,
                          list(callbacks))
    except (NotADirectoryError, PermissionError, FileNotFoundError, IsADirectoryError,
            FileExistsError) as e:
        inside = e.filename is not None and os.path.commonpath(
            [os.path.abspath(str(e.filename)), os.path.abspath(out)]) == os.path.abspath(out)
        if not inside:
            raise
        raise ValueError(f"run folder {out}: {e.strerror} ({e.filename}); choose a writable "
                         "folder with --out / out_dir") from None


def _mesh(cfg: TrainConfig):
    """The run's devices: a batch x neurons mesh (``mesh``), the batch mesh
    of every device of every process in a distributed run, ``cfg.devices``
    local ones, or None (one device)."""
    if cfg.mesh is not None:
        from brainscale.model_parallel import model_mesh

        try:
            return model_mesh(*cfg.mesh_shape)
        except ValueError as e:
            raise ValueError(f"--mesh {cfg.mesh} (config key 'mesh'): {e}") from None
    if distributed.process_count() > 1:
        return distributed.process_mesh(cfg)
    if cfg.devices and cfg.devices > 1:
        from brainscale.sharding import batch_mesh

        return batch_mesh(cfg.devices)
    return None


def _place(learner, state, mesh):
    """``state`` on ``mesh``: neurons and batch split on a model mesh, the
    batch alone on a batch mesh."""
    from brainscale.model_parallel import NEURONS, shard_model
    from brainscale.sharding import shard_state

    if NEURONS in mesh.axis_names:
        return shard_model(learner, state, mesh)
    return shard_state(learner, state, mesh)


def _open_run(cfg: TrainConfig, built, resume, log, held: ExitStack) -> dict:
    """The run folder made, locked (until ``held`` closes), its log and
    config.json written; on ``resume`` the saved state read. Process 0 only."""
    out = cfg.run_dir
    os.makedirs(out, exist_ok=True)
    held.enter_context(run_lock(out))
    ckpt, log_path = os.path.join(out, CHECKPOINT), os.path.join(out, METRICS_LOG)
    found = [p for p in (ckpt, previous_path(ckpt)) if os.path.exists(p)]
    if not resume and found:
        raise FileExistsError(f"{found[0]} exists: resume that run (resume=True, --resume) or "
                              "train into another out_dir")
    task, learner, state = built
    opened = {"state": state, "start": 0, "read": None, "records": []}
    if resume:
        if not found:
            raise FileNotFoundError(f"nothing to resume: no {CHECKPOINT} in {out}")
        state, meta, read = load_latest(ckpt, state, log)
        check_resumable(meta["config"], cfg, read, task)
        start = int(meta["step"])
        log(f"resuming {cfg.task} / {cfg.algorithm} from step {start} ({read})")
        # a resumed run keeps what led to its checkpoint
        opened.update(state=state, start=start, read=read,
                      records=read_log(log_path, start, log))
    atomic_write(log_path, "".join(json_record(r) + "\n" for r in opened["records"]).encode())
    atomic_write(os.path.join(out, "config.json"), json.dumps(cfg.to_dict(), indent=2).encode())
    return opened


def _train(cfg: TrainConfig, built, mesh, opened, resume, log, progress, plots,
           callbacks) -> dict:
    import jax.numpy as jnp

    from brainscale.cli.progress import ProgressBar

    out = cfg.run_dir
    ckpt, log_path = os.path.join(out, CHECKPOINT), os.path.join(out, METRICS_LOG)
    task, learner, state = built
    leader, multi = distributed.is_leader(), distributed.process_count() > 1
    opened = opened or {}                     # None away from process 0
    start, read, records = opened.get("start", 0), opened.get("read"), opened.get("records", [])
    if resume:                                # process 0 read the checkpoint
        state = distributed.from_leader(opened.get("state", state))
        start = int(distributed.from_leader(np.asarray(start, np.int64)))
    placement = None
    if mesh is not None:
        from brainscale.sharding import shard_batch

        state = _place(learner, state, mesh)     # a checkpoint holds whole (host) arrays
        devices = list(mesh.devices.flat)
        placement = {"devices": len(devices), "platform": devices[0].platform,
                     "processes": len({d.process_index for d in devices})}
        log(f"batch {cfg.batch_size} split over {len(devices)} {devices[0].platform} devices "
            f"of {placement['processes']} process(es)")
    history = [r for r in records if r["kind"] == "eval"]
    eval_bs = cfg.eval_batch_size or cfg.batch_size

    saved = {"step": start, "path": read, "host": None} if resume else \
        {"step": None, "path": None, "host": None}

    def save(step):
        host = distributed.to_host(state)     # every process takes part in the gather
        if leader:
            save_checkpoint(ckpt, host, {"step": step, "config": cfg.to_dict(),
                                         "task": task.name, "task_options": task.options})
        saved.update(step=step, path=ckpt, host=host if multi else None)
        call(callbacks, "on_checkpoint", step, ckpt)

    def refuse(step, what):
        kept = (f"the last checkpoint ({saved['path']}, step {saved['step']}) is unchanged"
                if saved["step"] is not None else "no checkpoint was written")
        raise FloatingPointError(f"step {step + 1}: {what}; the update was not applied and "
                                 f"{kept}: lower lr, set grad_clip, or check the inputs")

    stop = _Stop()
    status, done = "completed", start
    bar = None
    logf = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)),
                     "a") if leader else None
    try:
        with _graceful_signals(stop), (logf or nullcontext()):
            def emit(rec):
                if logf is not None:
                    logf.write(json_record(rec) + "\n")
                    logf.flush()

            def score(step):
                rec = {"kind": "eval", "step": step, **evaluate(task, learner, state, eval_bs, mesh)}
                emit(rec)
                history.append(rec)
                call(callbacks, "on_eval", step, rec, state)
                log(f"step {step}: eval accuracy {rec['accuracy']:.4f} loss {rec['loss']:.4f}")

            if start == 0 and not any(r["step"] == 0 for r in history):
                score(0)                                      # the untrained baseline
            if progress:              # after the baseline: its time is not the first step's
                bar = ProgressBar(cfg.steps - start, desc=f"{cfg.task}/{cfg.algorithm}")
            for step in range(start, cfg.steps):
                xs, ys = task.train_batch(cfg.seed, step, cfg.batch_size)
                check_batch(xs, ys, n_out=task.n_out, batch_size=cfg.batch_size,
                            where=f"train batch at step {step}")
                batch = shard_batch((xs, ys), mesh) if mesh is not None else \
                    (jnp.asarray(xs), jnp.asarray(ys))
                t0 = time.perf_counter()
                new_state, metrics = learner.train_sequence(state, *batch)
                loss, grad_norm = float(metrics["loss"]), float(metrics["grad_norm"])
                if not np.isfinite(loss):
                    refuse(step, f"the training loss is {loss}")
                if not np.isfinite(grad_norm):
                    refuse(step, f"the gradient norm is {grad_norm}")
                bad = first_nonfinite(new_state, "state")     # what a checkpoint would hold
                if bad:
                    refuse(step, f"{bad} holds NaN or inf after the update")
                state = new_state
                done = step + 1
                per_label = loss_per_label(loss, ys)
                rec = {"kind": "train", "step": done, "loss": loss, "loss_per_label": per_label,
                       "grad_norm": grad_norm, "seconds": time.perf_counter() - t0}
                emit(rec)
                call(callbacks, "on_step", done, rec, state)
                if bar is not None:
                    bar.update(1, loss=per_label)
                if multi:             # a signal to any process stops all after this step
                    stop.signum = distributed.max_over_processes(stop.signum or 0) or None
                last = done == cfg.steps
                if eval_due(cfg, done):
                    score(done)
                if done % cfg.checkpoint_every == 0 or last or stop.signum is not None:
                    save(done)
                if stop.signum is not None:
                    status = "interrupted"
                    emit({"kind": "interrupted", "step": done, "signal": int(stop.signum)})
                    log(f"stopped by signal {stop.signum} after step {done}; checkpoint {ckpt}; "
                        "continue with resume=True (--resume)")
                    break
    except BaseException as e:
        call(callbacks, "on_end", {"status": "error", "step": done, "error": repr(e),
                                   "out_dir": out})
        raise
    finally:
        if bar is not None:
            bar.close()
    final = history[-1] if history else None
    summary = {"status": status, "step": done, "resumed_from": start if resume else None,
               "final": final, "history": history, "out_dir": out, "checkpoint": ckpt,
               "task_name": task.name, "algorithm": cfg.algorithm, "placement": placement}
    if leader:
        atomic_write(os.path.join(out, "result.json"), json.dumps(summary, indent=2).encode())
    call(callbacks, "on_end", summary)
    shown = state
    if multi and status == "completed":       # the plots run on process 0's devices alone
        shown = saved["host"] if saved["host"] is not None else distributed.to_host(state)
    if plots and status == "completed":
        from brainscale.train.plots import plot_run

        summary["plots"] = plot_run(out, task, learner, shown, cfg)
    return {**summary, "task": task, "learner": learner, "state": state,
            "signal": stop.signum}
