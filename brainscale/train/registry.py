"""Task names for configs and the CLI.

A name is found, in this order, in:

1. the table (``TASKS``: the built-in tasks as ``"module:make_task"``, and
   whatever ``register_task`` added in this process);
2. the entry point group ``brainscale.tasks`` of installed packages, so a
   package's tasks work in every process (``brainscale map``, ``--resume``)::

       [project.entry-points."brainscale.tasks"]
       two_freq = "mypkg.tasks:make_two_freq"

3. the name itself when it reads ``"package.module:factory"``.

Imports are lazy, so naming a task loads only its own dependencies (the
neuromorphic datasets need tonic and h5py, the others do not).
"""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Callable

from brainscale.train.task import Task

__all__ = ["TASKS", "ENTRY_POINT_GROUP", "make_task", "register_task", "task_factory",
           "task_names", "describe_task", "model_schema"]

ENTRY_POINT_GROUP = "brainscale.tasks"

TASKS: dict[str, str | Callable[..., Task]] = {
    "digits": "brainscale.tasks.digits_task:make_task",
    "dmts": "brainscale.tasks.dmts_task:make_task",
    "evidence": "brainscale.tasks.evidence:make_task",
    "copy": "brainscale.tasks.copy_task:make_task",
    "nmnist": "brainscale.datasets.nmnist:make_task",
    "shd": "brainscale.datasets.shd:make_task",
    "ssc": "brainscale.datasets.shd:make_ssc_task",
    "dvs_gesture": "brainscale.datasets.dvs_gesture:make_task",
    "mnist": "brainscale.tasks.mnist_task:make_mnist_task",
    "smnist": "brainscale.tasks.mnist_task:make_smnist_task",
    "psmnist": "brainscale.tasks.mnist_task:make_psmnist_task",
}


def register_task(name: str, factory: Callable[..., Task] | str, *, replace: bool = False):
    """Make ``name`` a task for ``TrainConfig(task=name)``, ``fit`` and the
    CLI in this process. ``factory(**task_options)`` returns a ``Task``, or is
    given as ``"module:function"``. Another process (``brainscale map``, a
    ``--resume`` from the shell) finds it through the entry point group
    ``brainscale.tasks`` or when the config names ``"module:function"``.
    """
    from brainscale.train.config import TASK_NAME

    if not isinstance(name, str) or not TASK_NAME.fullmatch(name) or ":" in name:
        raise ValueError(f"task name {name!r}: letters, digits, '_', '.', '-'")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise TypeError(f"register_task({name!r}): factory must be callable or "
                        f"'module:function', got {factory!r}")
    if name in TASKS and TASKS[name] is not factory and not replace:
        raise ValueError(f"task {name!r} is already registered ({TASKS[name]}); "
                         "pass replace=True to replace it")
    TASKS[name] = factory
    return factory


def _installed() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names(tasks: dict | None = None) -> list[str]:
    """Every task name: the table's and the installed entry points'."""
    if tasks is not None:
        return sorted(tasks)
    return sorted(set(TASKS) | set(_installed()))


def _import(ref: str, what: str):
    """``module:attr``; a module not on the path is also looked for in the
    current folder (as ``python -m`` would), since console scripts omit it."""
    import os
    import sys

    module, _, attr = ref.partition(":")
    try:
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.insert(0, os.getcwd())
            obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{what}: cannot import {ref!r} ({e})") from None
    return obj


def task_factory(name: str, tasks: dict | None = None) -> Callable[..., Task]:
    """The function that builds task ``name`` (see the module docstring for
    where names are found); an unknown name is an error that lists them."""
    table = TASKS if tasks is None else tasks
    if name in table:
        entry = table[name]
        return _import(entry, f"task {name!r}") if isinstance(entry, str) else entry
    if tasks is None:
        found = _installed().get(name)
        if found is not None:
            return found.load()
    if ":" in name:
        return _import(name, f"task {name!r}")
    raise ValueError(
        f"unknown task {name!r}; known tasks: {task_names(tasks)}. A task of your own: "
        f"brainscale.train.register_task({name!r}, factory) in this process, an entry point "
        f"in group {ENTRY_POINT_GROUP!r} for every process, or name it by its factory "
        "('package.module:make_task')")


def _check_options(name, factory, options):
    """Unknown and missing options name the option; an option annotated
    ``int`` (or unannotated with an int default) takes an integer
    (``T=2.7`` is an error, never truncated)."""
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(options) - set(params)) if not takes_any else []
    if unknown:
        raise ValueError(f"task {name!r}: unknown task_options {unknown}; it takes "
                         f"{[p for p in params if p != 'self']}")
    missing = [p.name for p in params.values() if p.default is p.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in options]
    if missing:
        flags = " ".join(f"--set task_options.{m}=..." for m in missing)
        raise ValueError(f"task {name!r} needs task_options {missing} (config "
                         f"\"task_options\": {{...}}, or {flags})")
    for key, value in options.items():
        p = params.get(key)
        wants_int = p is not None and (p.annotation in (int, "int") or (
            p.annotation is p.empty and type(p.default) is int))
        if wants_int and not (
                isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError(f"config key 'task_options.{key}' of task {name!r} must be an "
                             f"integer, got {value!r}")


def make_task(name: str, options: dict | None = None, tasks: dict | None = None) -> Task:
    """Build the task ``name`` with ``options``; an unknown name or option,
    or a required one left out, is an error that says which exist."""
    factory = task_factory(name, tasks)
    options = dict(options or {})
    _check_options(name, factory, options)
    try:
        task = factory(**options)
    except TypeError as e:
        raise ValueError(f"task {name!r}: bad task_options {sorted(options)} ({e})") from None
    if not isinstance(task, Task):
        raise TypeError(f"task {name!r}: its factory returned {type(task).__name__}, not a Task")
    return task


def describe_task(name: str, options: dict | None = None, tasks: dict | None = None) -> str:
    """The options of task ``name`` as text: its ``task_options`` (from the
    factory's signature and docstring) and its ``model`` options (type,
    default, meaning) when the task declares a schema."""
    from brainscale.models.options import as_json, describe

    factory = task_factory(name, tasks)
    rows = []
    for p in inspect.signature(factory).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        ann = p.annotation if isinstance(p.annotation, str) else getattr(
            p.annotation, "__name__", "")
        default = "(required)" if p.default is p.empty else as_json(p.default)
        rows.append((f"task_options.{p.name}", ann if ann != "_empty" else "", default))
    w = [max([len(r[i]) for r in rows] + [1]) for i in range(2)]
    lines = [f"task {name!r}", "", "task options (--set task_options.KEY=VALUE):"]
    lines += [f"  {a:<{w[0]}}  {b:<{w[1]}}  {c}" for a, b, c in rows] or ["  (none)"]
    doc = inspect.getdoc(factory)
    if doc:
        lines += [""] + ["  " + line for line in doc.splitlines()]
    schema, defaults = model_schema(name, options, tasks)
    lines += ["", "model options (--set model.KEY=VALUE):"]
    lines.append(describe(schema, defaults) if schema is not None else
                 "  (this task declares no schema: see its make_model)")
    return "\n".join(lines)


def model_schema(name: str, options: dict | None = None, tasks: dict | None = None):
    """(schema, defaults) of task ``name``'s model: the factory's module's
    ``MODEL_OPTIONS`` with the factory's ``model_defaults(**options)`` or
    the module's ``MODEL_DEFAULTS`` (no data loaded), else those of the task
    built with ``options``."""
    factory, options = task_factory(name, tasks), dict(options or {})
    module = importlib.import_module(factory.__module__)
    if getattr(module, "MODEL_OPTIONS", None) is not None:
        defaults_of = getattr(factory, "model_defaults", None)    # defaults by task option
        if callable(defaults_of):
            return module.MODEL_OPTIONS, dict(defaults_of(**options))
        return module.MODEL_OPTIONS, dict(getattr(module, "MODEL_DEFAULTS", {}) or {})
    task = make_task(name, options, tasks)
    return task.model_options, dict(task.model_defaults)
