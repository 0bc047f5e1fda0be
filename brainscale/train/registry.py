"""Task names for configs and the CLI: name -> ``"module:make_task"``.

Imports are lazy, so naming a task loads only its own dependencies (the
neuromorphic datasets need tonic and h5py, the others do not). A run may
also pass its own ``Task`` to ``fit``, or its own name table to ``make_task``.
"""
from __future__ import annotations

import importlib

from brainscale.train.task import Task

__all__ = ["TASKS", "make_task", "task_names"]

TASKS = {
    "digits": "brainscale.tasks.digits_task:make_task",
    "dmts": "brainscale.tasks.dmts_task:make_task",
    "evidence": "brainscale.tasks.evidence:make_task",
    "copy": "brainscale.tasks.copy_task:make_task",
    "nmnist": "brainscale.datasets.nmnist:make_task",
    "shd": "brainscale.datasets.shd:make_task",
    "ssc": "brainscale.datasets.shd:make_ssc_task",
    "dvs_gesture": "brainscale.datasets.dvs_gesture:make_task",
}


def task_names(tasks: dict | None = None) -> list[str]:
    return sorted(TASKS if tasks is None else tasks)


def _check_integers(name, factory, options):
    """An option annotated ``int`` takes an integer: ``T=2.7`` is an error,
    never silently truncated."""
    import inspect

    params = inspect.signature(factory).parameters
    for key, value in options.items():
        p = params.get(key)
        if p is not None and p.annotation in (int, "int") and not (
                isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError(f"config key 'task_options.{key}' of task {name!r} must be an "
                             f"integer, got {value!r}")


def make_task(name: str, options: dict | None = None, tasks: dict | None = None) -> Task:
    """Build the task ``name`` with ``options``; an unknown name or option is
    an error that says which names and options exist."""
    table = TASKS if tasks is None else tasks
    if name not in table:
        raise ValueError(f"unknown task {name!r}; known tasks: {task_names(table)}")
    module, _, attr = table[name].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    _check_integers(name, factory, options or {})
    try:
        task = factory(**(options or {}))
    except TypeError as e:
        import inspect

        params = [p for p in inspect.signature(factory).parameters if p != "self"]
        raise ValueError(f"task {name!r}: bad task_options {sorted(options or {})} ({e}); "
                         f"it takes {params}") from None
    if not isinstance(task, Task):
        raise TypeError(f"{table[name]} returned {type(task).__name__}, not a Task")
    return task
