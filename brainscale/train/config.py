"""``TrainConfig``: everything a training run depends on, as JSON.

A config file is plain JSON (never pickle); unknown keys are an error that
names the key, so a typo does not silently fall back to a default.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig", "OPTIMIZERS", "LR_SCHEDULES", "load_config", "config_from_dict"]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")
MESH = re.compile(r"(\d+)x(\d+)")      # batch x neurons devices
# a registered name, or a factory as "package.module:function"
TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z_][A-Za-z0-9_.]*)?")


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    ``task`` names a registered task (``brainscale.train.registry``) built
    with ``task_options``; ``model`` overrides the task's default model
    options; ``learner`` holds extra keyword arguments of ``brainscale.online``
    (``decay``, ``window``, ``readout_paths``...). The test set is scored
    before training (step 0), every ``eval_every`` steps and at the last
    step; ``eval_every`` null (the default) means ``ceil(steps / 10)``, about
    ten evaluations a run. Every ``checkpoint_every`` steps (and on SIGINT /
    SIGTERM) a checkpoint is written atomically. ``devices`` > 1 shards the
    batch over that many devices (``batch_size`` must divide evenly).
    ``lr_schedule`` ``"cosine"`` decays ``lr`` to 0 over ``steps`` (optax's
    cosine decay; the optimizer's step count is in the checkpoint, so a
    resumed run continues the schedule). ``mesh`` ``"BxN"`` (e.g. ``"2x2"``) runs on a batch x neurons mesh of
    B * N devices: the batch split B ways and every population's neurons
    (weights, hidden state, traces) N ways (``brainscale.model_parallel``).
    In a run over several processes (``brainscale.train.distributed``) the
    batch is split over every device of every process; ``devices`` is then
    null or that total.
    """

    task: str
    task_options: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    algorithm: str = "es_d_rtrl"
    learner: dict = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_schedule: str = "constant"
    grad_clip: float | None = None
    batch_size: int = 32
    steps: int = 1000
    eval_every: int | None = None
    checkpoint_every: int = 100
    eval_batch_size: int | None = None
    seed: int = 0
    out_dir: str | None = None
    devices: int | None = None
    mesh: str | None = None

    def __post_init__(self):
        from brainscale.train.finite import nonfinite_keys

        bad = nonfinite_keys(dataclasses.asdict(self))
        if bad:
            raise ValueError(f"config key {bad[0]!r} is not a finite number; every number in "
                             "a config must be finite")
        _check(isinstance(self.task, str) and TASK_NAME.fullmatch(self.task) is not None,
               "task", "a task name (letters, digits, '_', '.', '-'; no path) or a factory "
               "'package.module:function'")
        for name in ("task_options", "model", "learner"):
            _check(isinstance(getattr(self, name), dict), name, "a JSON object")
        import brainscale

        _check(self.algorithm in brainscale.ALGORITHMS, "algorithm",
               f"one of {sorted(brainscale.ALGORITHMS)}")
        _check(self.optimizer in OPTIMIZERS, "optimizer", f"one of {list(OPTIMIZERS)}")
        _check(_num(self.lr) and self.lr > 0, "lr", "a positive number")
        _check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {list(LR_SCHEDULES)}")
        _check(self.grad_clip is None or (_num(self.grad_clip) and self.grad_clip > 0),
               "grad_clip", "null or a positive number")
        for name in ("batch_size", "steps", "checkpoint_every"):
            _check(_int(getattr(self, name)) and getattr(self, name) > 0, name,
                   "a positive integer")
        _check(self.eval_every is None or (_int(self.eval_every) and self.eval_every > 0),
               "eval_every", "null (about ten evaluations a run) or a positive integer")
        _check(self.eval_batch_size is None or (_int(self.eval_batch_size)
                                                and self.eval_batch_size > 0),
               "eval_batch_size", "null or a positive integer")
        _check(_int(self.seed) and 0 <= self.seed < 2 ** 32, "seed",
               "an integer in [0, 2**32)")
        _check(self.devices is None or (_int(self.devices) and self.devices > 0), "devices",
               "null or a positive integer")
        if self.devices:
            _check(self.batch_size % self.devices == 0, "batch_size",
                   f"a multiple of devices ({self.devices})")
        if self.mesh is not None:
            self._check_mesh()

    def _check_mesh(self):
        m = MESH.fullmatch(self.mesh) if isinstance(self.mesh, str) else None
        _check(m is not None and int(m.group(1)) > 0 and int(m.group(2)) > 0, "mesh",
               f"null or 'BxN' (--mesh BxN: B devices for the batch times N for the neurons, "
               f"e.g. '2x2'), got {self.mesh!r}")
        b, n = self.mesh_shape
        _check(self.devices is None or self.devices == b * n, "mesh",
               f"a mesh of as many devices as 'devices' (--devices {self.devices}), got "
               f"{self.mesh!r} = {b * n} devices")
        _check(self.batch_size % b == 0, "batch_size",
               f"a multiple of the mesh's batch size ({b}, --mesh {self.mesh})")
        _check(self.eval_batch_size is None or self.eval_batch_size % b == 0,
               "eval_batch_size", f"a multiple of the mesh's batch size ({b}, --mesh {self.mesh})")

    @property
    def mesh_shape(self) -> tuple[int, int] | None:
        """``(batch, neurons)`` of ``mesh``, or None."""
        if self.mesh is None:
            return None
        m = MESH.fullmatch(self.mesh)
        return int(m.group(1)), int(m.group(2))

    @property
    def run_dir(self) -> str:
        return self.out_dir if self.out_dir else f"runs/{self.task.replace(':', '.')}"

    @property
    def eval_interval(self) -> int:
        """Steps between evaluations: ``eval_every``, or ``ceil(steps / 10)``."""
        return self.eval_every if self.eval_every is not None else -(-self.steps // 10)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return config_from_dict({**self.to_dict(), **changes})


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check(ok, key, want):
    if not ok:
        raise ValueError(f"config key {key!r} must be {want}")


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Build a config, naming any unknown key."""
    if not isinstance(d, dict):
        raise ValueError(f"a config is a JSON object, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known keys: {sorted(known)}")
    if "task" not in d:
        raise ValueError("config key 'task' is required")
    return TrainConfig(**d)


def load_config(path: str, **overrides) -> TrainConfig:
    """Read a JSON config file; ``overrides`` (e.g. from the CLI) win."""
    try:
        with open(path) as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a config is a JSON object")
    return config_from_dict({**d, **{k: v for k, v in overrides.items() if v is not None}})
