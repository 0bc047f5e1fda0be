"""``brainscale train``: the command-line face of ``fit``.

    brainscale train --task dmts --algorithm es_d_rtrl --config run.json \\
        --set task_options.delay=300 --set model.hidden=[128] --out runs/dmts
    brainscale train --out runs/dmts --resume          # after Ctrl-C or a kill
    brainscale train --task dmts --processes 2         # two processes train together
    brainscale train --task dmts --coordinator 10.0.0.1:12345 --num-processes 2 \
        --process-id 0                                 # on host 0; host 1 says --process-id 1

Precedence: defaults < config file < flags < ``--set``. ``--set`` values are
JSON (``3e-3``, ``[64,64]``, ``true``) or, failing that, plain strings.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

__all__ = ["add_train_parser", "run_train", "config_from_args"]


ALGORITHM_HELP = {
    "es_d_rtrl": "D-RTRL's traces factorised into pre- and postsynaptic parts (the default)",
    "d_rtrl": "diagonal real-time recurrent learning, exact for element-wise neurons",
    "e_prop": "e-prop: symmetric feedback (D-RTRL's signal) unless --feedback random",
    "ostl": "online spatio-temporal learning",
    "bptt": "backpropagation through time over the whole sequence (the exact reference)",
    "tbptt": "truncated BPTT: gradients through each chunk of --k steps only (memory O(k))",
    "low_rank_d_rtrl": "D-RTRL's traces cut to their best rank --rank each step (ES's memory)",
}


def add_train_parser(sub) -> argparse.ArgumentParser:
    from brainscale.train.config import OPTIMIZERS, TrainConfig
    from brainscale.train.registry import task_names

    d = TrainConfig(task="digits")          # the defaults, for the help text
    p = sub.add_parser(
        "train", help="train a network on a task (checkpoints, resume, metrics log, plots)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train online (D-RTRL, ES-D-RTRL, e-prop, OSTL) or with BPTT on a "
                    "registered task. Writes metrics.jsonl, checkpoint.msgpack (atomically, "
                    "every N steps and on SIGINT/SIGTERM), config.json (every value used), "
                    "learning_curve.png, raster.png and result.json into the output folder.\n\n"
                    "tasks: " + ", ".join(task_names()) + "\nalgorithms:\n" + "\n".join(
                        f"  {k:<16} {v}" for k, v in ALGORITHM_HELP.items())
                    + "\n\nPrecedence: defaults < --config file < flags < --set. "
                    "--task T --show-options lists T's options.")
    p.add_argument("--task", help="task name, or a factory 'package.module:function' "
                                  "(default: 'task' of the config file)")
    p.add_argument("--algorithm", choices=sorted(ALGORITHM_HELP),
                   help=f"learning algorithm (default: {d.algorithm})")
    p.add_argument("--k", type=int, metavar="STEPS",
                   help="tbptt only: steps per truncation chunk (default 50)")
    p.add_argument("--rank", type=int, metavar="R",
                   help="low_rank_d_rtrl only: the traces' rank (default 2)")
    p.add_argument("--feedback", choices=["symmetric", "random"],
                   help="e-prop only: the learning signal's feedback weights, the readout's "
                        "own (symmetric, default) or fixed random ones (random feedback "
                        "alignment, as in the e-prop paper)")
    p.add_argument("--config", metavar="FILE",
                   help="JSON config with any brainscale.train.TrainConfig key (task, "
                        "task_options, model, algorithm, learner, lr, ...)")
    p.add_argument("--steps", type=int, help=f"training steps (default: {d.steps})")
    p.add_argument("--batch-size", type=int, dest="batch_size",
                   help=f"sequences per step (default: {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"learning rate (default: {d.lr})")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"],
                   help="constant (default) or cosine decay to 0 over --steps")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optax optimizer (default: "
                                                           f"{d.optimizer})")
    p.add_argument("--seed", type=int, help=f"seed of the weights and batches (default: "
                                            f"{d.seed})")
    p.add_argument("--devices", type=int,
                   help="shard the batch over this many devices (default: one device)")
    p.add_argument("--mesh", metavar="BxN",
                   help="model parallelism: a batch x neurons mesh of B*N devices, e.g. 2x2: "
                        "the batch split B ways, every population's neurons (weights, hidden "
                        "state, traces) N ways")
    p.add_argument("--eval-every", type=int, dest="eval_every",
                   help="steps between evaluations (default: steps / 10; also at step 0)")
    p.add_argument("--checkpoint-every", type=int, dest="checkpoint_every",
                   help=f"write a checkpoint every N steps (default: {d.checkpoint_every})")
    p.add_argument("--out", dest="out_dir", metavar="DIR",
                   help="run folder (default: runs/<task>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, dotted for nested ones "
                        "(task_options.delay=300, model.hidden=[64,64]); JSON values; "
                        "repeatable")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in the output folder")
    p.add_argument("--show-options", action="store_true", dest="show_options",
                   help="print the task's options and its model's options (type, default, "
                        "meaning) and exit")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files into <out>/tensorboard "
                        "(needs the tensorboard extra)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots at the end")
    g = p.add_argument_group(
        "several processes", "data parallel over JAX's distributed runtime: the batch is split "
        "over the devices of all processes, gradients are reduced across them, and process 0 "
        "alone writes the run folder")
    g.add_argument("--processes", type=int, metavar="N",
                   help="start N processes on this machine that train together")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="join a run over several hosts: process 0's address and a free port "
                        "on it (every host runs the same command with its own --process-id); "
                        "'auto': JAX reads all three from the cluster (SLURM, Open MPI, TPU)")
    g.add_argument("--num-processes", type=int, dest="num_processes", metavar="N",
                   help="with --coordinator: the number of processes in all")
    g.add_argument("--process-id", type=int, dest="process_id", metavar="I",
                   help="with --coordinator: this process's number, 0 to N-1")
    p.set_defaults(func=run_train)
    return p


def _parse_value(text: str, key: str = "value"):
    """JSON, or failing that the plain string; text that starts like a JSON
    list, object or string but does not parse is an error naming the key."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip()[:1] in ("[", "{", '"'):
            raise ValueError(f"--set {key}={text}: not valid JSON ({e.msg} at column "
                             f"{e.colno})") from None
        return text


def config_from_args(args):
    from brainscale.train.config import config_from_dict

    d: dict = {}
    if args.config:
        with open(args.config) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{args.config}: not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{args.config}: a config is a JSON object")
    elif args.resume and args.out_dir and not args.task:
        d = _saved_config(args.out_dir)
    for key in ("task", "algorithm", "steps", "batch_size", "lr", "lr_schedule", "optimizer",
                "seed", "devices", "mesh", "eval_every", "checkpoint_every", "out_dir"):
        v = getattr(args, key, None)
        if v is not None:
            d[key] = v
    if getattr(args, "feedback", None) is not None:
        d["learner"] = {**d.get("learner", {}), "feedback": args.feedback}
    if getattr(args, "k", None) is not None:
        d["learner"] = {**d.get("learner", {}), "k": args.k}
    if getattr(args, "rank", None) is not None:
        d["learner"] = {**d.get("learner", {}), "rank": args.rank}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        *parents, leaf = key.split(".")
        node = d
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: {part!r} is not an object")
        node[leaf] = _parse_value(value, key)
    return config_from_dict(d)


def _saved_config(out_dir: str) -> dict:
    """The config of the run in ``out_dir``: its config.json, or where that is
    missing or damaged, the copy inside its checkpoint (said on stderr)."""
    from brainscale.train.checkpoint import (CheckpointError, previous_path,
                                             read_checkpoint_meta)
    from brainscale.train.runner import CHECKPOINT

    path = os.path.join(out_dir, "config.json")
    try:
        with open(path) as f:
            d = json.load(f)
        if isinstance(d, dict) and "task" in d:
            return d
        problem = "is not a config object"
    except FileNotFoundError:
        problem = "is missing"
    except (OSError, ValueError) as e:
        problem = f"is unreadable ({e})"
    ckpt = os.path.join(out_dir, CHECKPOINT)
    for source in (ckpt, previous_path(ckpt)):
        try:
            d = read_checkpoint_meta(source)["config"]
        except (CheckpointError, OSError, KeyError, TypeError, ValueError):
            continue
        print(f"note: {path} {problem}; using the config saved in {source}", file=sys.stderr)
        return d
    raise ValueError(f"{path} {problem} and no readable checkpoint in {out_dir} holds a "
                     "config: give --config or --task")


def process_mode(args) -> str | None:
    """``"launch"`` (``--processes N`` > 1), ``"join"`` (``--coordinator``) or
    None (one process); contradictory or incomplete flags are an error naming
    them."""
    from brainscale.train.distributed import parse_coordinator

    joining = [f for f, v in (("--coordinator", args.coordinator), ("--num-processes",
               args.num_processes), ("--process-id", args.process_id)) if v is not None]
    if args.processes is not None:
        if args.processes < 1:
            raise ValueError(f"--processes must be at least 1, got {args.processes}")
        if joining:
            raise ValueError(f"--processes starts the processes itself; {', '.join(joining)} "
                             "is for a run whose hosts each start their own: give one or the "
                             "other")
        return "launch" if args.processes > 1 else None
    if not joining:
        return None
    if args.coordinator is None:
        raise ValueError(f"{' and '.join(joining)} need --coordinator HOST:PORT (process 0's "
                         "address)")
    if args.coordinator == "auto":
        if len(joining) > 1:
            raise ValueError("--coordinator auto reads the process count and id from the "
                             "cluster's environment: drop --num-processes and --process-id")
        return "join"
    parse_coordinator(args.coordinator)
    if args.num_processes is None or args.process_id is None:
        missing = "--num-processes N" if args.num_processes is None else "--process-id I"
        raise ValueError(f"--coordinator needs {missing} too")
    if args.num_processes < 1:
        raise ValueError(f"--num-processes must be at least 1, got {args.num_processes}")
    if not 0 <= args.process_id < args.num_processes:
        raise ValueError(f"--process-id {args.process_id} is out of range for --num-processes "
                         f"{args.num_processes} (0 to {args.num_processes - 1})")
    return "join"


def run_train(args) -> int:
    if args.show_options:
        return _show_options(args)
    try:
        mode = process_mode(args)
        cfg = config_from_args(args)
        if mode == "launch":
            return _launch(args, cfg)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if mode == "join":
        from brainscale.train.distributed import run_as_worker

        return run_as_worker(lambda: _join(args, cfg))
    return _train(args, cfg)


def _launch(args, cfg) -> int:
    from brainscale.train.launcher import launch

    n = args.processes
    for key in ("batch_size", "eval_batch_size"):       # every process has a device at least
        value = getattr(cfg, key)
        if value is not None and value % n:
            raise ValueError(f"config key {key!r} ({value}) must be a multiple of the number "
                             f"of devices, and --processes {n} gives at least {n}")
    flags = [f for f, on in (("--resume", args.resume), ("--no-plots", args.no_plots),
                             ("--tensorboard", args.tensorboard)) if on]
    return launch(cfg.to_dict(), n, flags)


def _join(args, cfg) -> int:
    from brainscale.train.distributed import initialize

    auto = args.coordinator == "auto"
    try:
        initialize(None if auto else args.coordinator, None if auto else args.num_processes,
                   None if auto else args.process_id)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _train(args, cfg)


def _train(args, cfg) -> int:
    from brainscale.train.batches import BatchError
    from brainscale.train.checkpoint import CheckpointError
    from brainscale.train.run_lock import RunLockedError
    from brainscale.train.runner import fit

    try:
        callbacks = []
        if args.tensorboard:
            from brainscale.train.callbacks import TensorBoard

            callbacks.append(TensorBoard(os.path.join(cfg.run_dir, "tensorboard")))
        result = fit(cfg, resume=args.resume, plots=not args.no_plots, callbacks=callbacks)
    except (ValueError, BatchError, CheckpointError, FileExistsError, FileNotFoundError,
            FloatingPointError, RunLockedError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    final = result["final"]
    if final is not None:
        at = "" if final["step"] == result["step"] else f" (evaluated at step {final['step']})"
        print(f"{cfg.task} / {cfg.algorithm}: step {result['step']}, evaluation accuracy "
              f"{final['accuracy']:.4f}, loss {final['loss']:.4f}{at} ({result['out_dir']})")
    if result["status"] == "interrupted":
        return 128 + int(result["signal"] or signal.SIGINT)
    return 0


def _show_options(args) -> int:
    from brainscale.train.registry import describe_task

    if args.task is None and not args.config:
        print("error: --show-options needs --task (or a --config naming one)", file=sys.stderr)
        return 2
    try:
        cfg = config_from_args(args)
        print(describe_task(cfg.task, cfg.task_options))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0

