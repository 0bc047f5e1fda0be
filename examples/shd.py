"""Train a recurrent ALIF network on SHD (or SSC with --ssc) with ES-D-RTRL.

The data is not downloaded: put tonic's layout under --data-dir
(``<data-dir>/SHD/shd_train.h5``, ``shd_test.h5``; for SSC
``<data-dir>/SSC/ssc_{train,valid,test}.h5``; a missing file is an error
that says what to download and where to unzip it). Binned samples are cached
in --cache-dir (default ``<data-dir>/brainscale_cache``).

    python examples/shd.py --data-dir ~/data [--steps 2000] [--ssc]
    python examples/shd.py --synthetic     # tiny fake data folder, a few steps
"""
import argparse
import os
import tempfile

from brainscale.datasets import shd
from brainscale.datasets.synthetic import fake_hsd
from brainscale.train import TrainConfig, fit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", help="folder holding SHD/ or SSC/ (required unless --synthetic)")
    ap.add_argument("--synthetic", action="store_true",
                    help="write a tiny fake data folder into a temp dir and train on it")
    ap.add_argument("--ssc", action="store_true", help="Spiking Speech Commands (35 classes)")
    ap.add_argument("--algorithm", default="es_d_rtrl", choices=["es_d_rtrl", "d_rtrl", "bptt"])
    ap.add_argument("--steps", type=int, default=None, help="default 2000 (--quick 200, "
                                                             "--synthetic 40)")
    ap.add_argument("--quick", action="store_true",
                    help="64 hidden neurons, 1000 training and 500 test samples")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--T", type=int, default=100, help="10 ms frames per sample")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out-dir", default=None, help="default runs/shd (runs/ssc)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.synthetic and not args.data_dir:
        ap.error("--data-dir is required unless --synthetic")
    kind = "SSC" if args.ssc else "SHD"

    with tempfile.TemporaryDirectory() as tmp:
        data_dir, out_dir, cache = args.data_dir, args.out_dir, args.cache_dir
        subset, model, steps = {}, {}, args.steps or 2000
        lr, batch_size = args.lr, args.batch_size
        if args.synthetic:
            data_dir = os.path.join(tmp, "data")
            fake_hsd(data_dir, kind, n_per_class=(6, 2))
            out_dir, cache = out_dir or os.path.join(tmp, "run"), cache or os.path.join(tmp, "c")
            model, steps, lr, batch_size = {"hidden": [64]}, args.steps or 40, 5e-3, 16
        elif args.quick:
            subset, model = {"max_samples": 1000, "max_eval": 500}, {"hidden": [64]}
            steps = args.steps or 200
        make = shd.make_ssc_task if args.ssc else shd.make_task
        task = make(data_dir, T=args.T, **subset,
                    cache_dir=cache or os.path.join(data_dir, "brainscale_cache"))
        cfg = TrainConfig(task=task.name, task_options=task.options, model=model,
                          algorithm=args.algorithm,
                          learner={"decay": 0.9} if args.algorithm == "es_d_rtrl" else {},
                          lr=lr, batch_size=batch_size, steps=steps,
                          eval_every=max(1, steps // 5), checkpoint_every=steps, seed=args.seed,
                          out_dir=out_dir)
        result = fit(cfg, task=task, resume=args.resume, plots=not args.synthetic)
    print(f"{kind} / {args.algorithm}: test accuracy {result['final']['accuracy']:.3f} after "
          f"{result['step']} steps (chance {1 / task.n_out:.3f})")
    return result


if __name__ == "__main__":
    main()
