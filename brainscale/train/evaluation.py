"""Scoring a run on the task's fixed evaluation set, and when to do it.

The schedule is a pure function of the step and the config, so a resumed
run evaluates at exactly the steps an uninterrupted one would.
"""
from __future__ import annotations

from brainscale.train.batches import check_batch, masked_cross_entropy
from brainscale.train.config import TrainConfig
from brainscale.train.distributed import to_host
from brainscale.train.task import Task, metric_counts

__all__ = ["evaluate", "eval_due", "eval_schedule"]


def eval_due(cfg: TrainConfig, step: int) -> bool:
    """Whether the run is scored after ``step`` training steps: at step 0
    (before training, the untrained baseline), every ``cfg.eval_interval``
    steps, and at the last step."""
    return step == 0 or step % cfg.eval_interval == 0 or step == cfg.steps


def eval_schedule(cfg: TrainConfig) -> list[int]:
    """Every step at which an uninterrupted run of ``cfg`` is scored."""
    return [s for s in range(cfg.steps + 1) if eval_due(cfg, s)]


def evaluate(task: Task, learner, state, batch_size: int, mesh=None) -> dict:
    """``accuracy`` (the task's metric), ``loss`` and ``n_scored`` on the
    task's evaluation set.

    ``loss`` is the training loss (cross-entropy) averaged over the labelled
    steps, comparable with the ``loss_per_label`` of the training records.
    With a mesh over several processes every process calls it and gets the
    same numbers.
    """
    import jax
    import jax.numpy as jnp

    hidden = jax.tree.map(lambda h: jnp.broadcast_to(h, (batch_size,) + jnp.shape(h)),
                          state.hidden0)
    probe = state._replace(hidden=hidden, traces={})
    if mesh is not None:
        from brainscale.model_parallel import NEURONS, shard_hidden
        from brainscale.sharding import shard_batch

        probe = probe._replace(hidden=shard_hidden(hidden, mesh) if NEURONS in mesh.axis_names
                               else shard_batch(hidden, mesh, time_axis=False))
    correct = total = count = 0
    loss = 0.0
    for i, (xs, ys) in enumerate(task.eval_batches(batch_size)):
        check_batch(xs, ys, n_out=task.n_out, batch_size=batch_size, where=f"eval batch {i}")
        x = jnp.asarray(xs)
        if mesh is not None:
            x = shard_batch(x, mesh)
        outs = to_host(learner.predict(probe, x))     # all rows, from every process
        c, n = metric_counts(outs, ys, task.metric)
        s, k = masked_cross_entropy(outs, ys)
        correct, total, loss, count = correct + c, total + n, loss + s, count + k
    return {"accuracy": correct / max(total, 1), "loss": loss / max(count, 1),
            "n_scored": total}
