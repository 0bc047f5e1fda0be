"""Training runs: tasks, configs, checkpoints, the loop and its CLI.

    from brainscale.train import TrainConfig, fit
    result = fit(TrainConfig(task="digits", algorithm="es_d_rtrl", steps=500))
"""
from brainscale.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from brainscale.train.config import TrainConfig, config_from_dict, load_config
from brainscale.train.registry import TASKS, describe_task, make_task, register_task
from brainscale.train.runner import build, evaluate, fit
from brainscale.train.batches import BatchError
from brainscale.train.task import METRICS, Task, metric_counts

__all__ = ["BatchError", "CheckpointError", "METRICS", "TASKS", "Task", "TrainConfig", "build",
           "config_from_dict", "describe_task", "evaluate", "fit", "register_task", "load_checkpoint", "load_config",
           "make_task", "metric_counts", "save_checkpoint"]
