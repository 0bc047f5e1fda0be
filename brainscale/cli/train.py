"""``brainscale train``: the command-line face of ``fit``.

    brainscale train --task dmts --algorithm es_d_rtrl --config run.json \\
        --set task_options.delay=300 --set model.hidden=[128] --out runs/dmts
    brainscale train --out runs/dmts --resume          # after Ctrl-C or a kill

Precedence: defaults < config file < flags < ``--set``. ``--set`` values are
JSON (``3e-3``, ``[64,64]``, ``true``) or, failing that, plain strings.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_train_parser", "run_train", "config_from_args"]


ALGORITHM_HELP = {
    "es_d_rtrl": "D-RTRL's traces factorised into pre- and postsynaptic parts (the default)",
    "d_rtrl": "diagonal real-time recurrent learning, exact for element-wise neurons",
    "e_prop": "e-prop: symmetric feedback (D-RTRL's signal) unless --feedback random",
    "ostl": "online spatio-temporal learning",
    "bptt": "backpropagation through time over the whole sequence (the exact reference)",
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
                        f"  {k:<10} {v}" for k, v in ALGORITHM_HELP.items())
                    + "\n\nPrecedence: defaults < --config file < flags < --set. "
                    "--task T --show-options lists T's options.")
    p.add_argument("--task", help="task name, or a factory 'package.module:function' "
                                  "(default: 'task' of the config file)")
    p.add_argument("--algorithm", choices=sorted(ALGORITHM_HELP),
                   help=f"learning algorithm (default: {d.algorithm})")
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
    for key in ("task", "algorithm", "steps", "batch_size", "lr", "optimizer", "seed", "devices",
                "mesh", "eval_every", "checkpoint_every", "out_dir"):
        v = getattr(args, key, None)
        if v is not None:
            d[key] = v
    if getattr(args, "feedback", None) is not None:
        d["learner"] = {**d.get("learner", {}), "feedback": args.feedback}
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


def run_train(args) -> int:
    from brainscale.train.batches import BatchError
    from brainscale.train.checkpoint import CheckpointError
    from brainscale.train.run_lock import RunLockedError
    from brainscale.train.runner import fit

    if args.show_options:
        return _show_options(args)
    try:
        cfg = config_from_args(args)
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
        hist = [r for r in _log(result["out_dir"]) if r["kind"] == "interrupted"]
        return 128 + int(hist[-1]["signal"]) if hist else 130
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


def _log(out_dir):
    from brainscale.train.runner import METRICS_LOG

    with open(os.path.join(out_dir, METRICS_LOG)) as f:
        return [json.loads(line) for line in f if line.strip()]
