"""The command line shared by the dataset examples (``examples/nmnist.py``,
``shd.py``, ``dvs_gesture.py``): arguments, a ``--synthetic`` fake data
folder in the real file format, and one ``fit`` run.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from typing import Callable

from brainscale.train import TrainConfig, fit

__all__ = ["run_dataset_example"]


def run_dataset_example(argv, *, title: str, folder: str, make_task: Callable,
                        write_fake: Callable[[str], object], default_T: int,
                        quick: dict, quick_T: int | None = None, synthetic_T: int | None = None,
                        description: str = "", extra_args: Callable | None = None,
                        choose: Callable | None = None) -> dict:
    """Parse ``argv``, train, print the test accuracy, return ``fit``'s result.

    ``quick``: task options of ``--quick`` (a subset); ``choose(args)`` may
    swap ``make_task``/``write_fake``/``title`` by extra flags (e.g. SSC)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data-dir", help=f"folder holding {folder}/ (required unless --synthetic)")
    ap.add_argument("--synthetic", action="store_true",
                    help="write a tiny fake data folder into a temp dir and train on it")
    ap.add_argument("--algorithm", default="es_d_rtrl", choices=["es_d_rtrl", "d_rtrl", "bptt"])
    ap.add_argument("--steps", type=int, default=None,
                    help="default 2000 (--quick 200, --synthetic 40)")
    ap.add_argument("--quick", action="store_true",
                    help=f"64 hidden neurons and a subset: {quick}")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--T", type=int, default=None, help=f"frames per sample (default {default_T})")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", dest="out_dir", default=None, metavar="DIR",
                    help="run folder (default: a temporary one with --synthetic)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    if extra_args is not None:
        extra_args(ap)
    args = ap.parse_args(argv)
    if not args.synthetic and not args.data_dir:
        ap.error("--data-dir is required unless --synthetic")
    if choose is not None:
        title, make_task, write_fake = choose(args, title, make_task, write_fake)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir, out_dir, cache = args.data_dir, args.out_dir, args.cache_dir
        subset, model, steps, T = {}, {}, args.steps or 2000, args.T or default_T
        lr, batch_size = args.lr, args.batch_size
        if args.synthetic:
            data_dir = os.path.join(tmp, "data")
            write_fake(data_dir)
            out_dir, cache = out_dir or os.path.join(tmp, "run"), cache or os.path.join(tmp, "c")
            model, steps, lr, batch_size = {"hidden": [64]}, args.steps or 40, 5e-3, 16
            T = args.T or synthetic_T or T
        elif args.quick:
            subset, model = dict(quick), {"hidden": [64]}
            steps, T = args.steps or 200, args.T or quick_T or T
        task = make_task(data_dir, T=T, **subset,
                         cache_dir=cache or os.path.join(data_dir, "brainscale_cache"))
        cfg = TrainConfig(task=task.name, task_options=task.options, model=model,
                          algorithm=args.algorithm, lr=lr, batch_size=batch_size, steps=steps,
                          eval_every=max(1, steps // 5), checkpoint_every=steps, seed=args.seed,
                          out_dir=out_dir)
        result = fit(cfg, task=task, resume=args.resume, plots=not args.synthetic)
    print(f"{title} / {args.algorithm}: test accuracy {result['final']['accuracy']:.3f} after "
          f"{result['step']} steps (chance {1 / task.n_out:.3f})")
    return result
