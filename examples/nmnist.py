"""Train a recurrent LIF network on N-MNIST with ES-D-RTRL.

The data is not downloaded: put tonic's N-MNIST layout under --data-dir
(``<data-dir>/NMNIST/Train/<digit>/*.bin`` and ``Test``; a missing file is
an error that says what to download and where to extract it). Binned
samples are cached in --cache-dir (default ``<data-dir>/brainscale_cache``).

    python examples/nmnist.py --data-dir ~/data [--steps 2000] [--algorithm d_rtrl]
    python examples/nmnist.py --synthetic     # tiny fake data folder, a few steps
"""
import argparse
import os
import tempfile

from brainscale.datasets import nmnist
from brainscale.datasets.synthetic import fake_nmnist
from brainscale.train import TrainConfig, fit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", help="folder holding NMNIST/ (required unless --synthetic)")
    ap.add_argument("--synthetic", action="store_true",
                    help="write a tiny fake N-MNIST folder into a temp dir and train on it")
    ap.add_argument("--algorithm", default="es_d_rtrl", choices=["es_d_rtrl", "d_rtrl", "bptt"])
    ap.add_argument("--steps", type=int, default=None, help="default 2000 (--quick 200, "
                                                             "--synthetic 40)")
    ap.add_argument("--quick", action="store_true",
                    help="64 hidden neurons, 1000 training and 500 test samples")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--T", type=int, default=30, help="frames per sample")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out-dir", default=None, help="default runs/nmnist")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.synthetic and not args.data_dir:
        ap.error("--data-dir is required unless --synthetic")

    with tempfile.TemporaryDirectory() as tmp:
        data_dir, out_dir, cache = args.data_dir, args.out_dir, args.cache_dir
        subset, model, steps = {}, {}, args.steps or 2000
        lr, batch_size = args.lr, args.batch_size
        if args.synthetic:
            data_dir = os.path.join(tmp, "data")
            fake_nmnist(data_dir, n_per_class=(8, 4))
            out_dir, cache = out_dir or os.path.join(tmp, "run"), cache or os.path.join(tmp, "c")
            model, steps, lr, batch_size = {"hidden": [64]}, args.steps or 40, 5e-3, 16
        elif args.quick:
            subset, model = {"max_samples": 1000, "max_eval": 500}, {"hidden": [64]}
            steps = args.steps or 200
        task = nmnist.make_task(data_dir, T=args.T, **subset,
                                cache_dir=cache or os.path.join(data_dir, "brainscale_cache"))
        cfg = TrainConfig(task="nmnist", task_options=task.options, model=model,
                          algorithm=args.algorithm,
                          learner={"decay": 0.9} if args.algorithm == "es_d_rtrl" else {},
                          lr=lr, batch_size=batch_size, steps=steps,
                          eval_every=max(1, steps // 5), checkpoint_every=steps, seed=args.seed,
                          out_dir=out_dir)
        result = fit(cfg, task=task, resume=args.resume, plots=not args.synthetic)
    print(f"N-MNIST / {args.algorithm}: test accuracy {result['final']['accuracy']:.3f} after "
          f"{result['step']} steps (chance 0.100)")
    return result


if __name__ == "__main__":
    main()
