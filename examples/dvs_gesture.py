"""Train a recurrent ALIF network on IBM DVS Gesture with ES-D-RTRL.

The data is not downloaded: put tonic's layout under --data-dir
(``<data-dir>/DVSGesture/ibmGestureTrain/<user>_<lighting>/<label>.npy`` and
``ibmGestureTest``; a missing file is an error that says what to download and
where to extract it). Recordings become 40 binary frames of 32 x 32 x 2
pixels; binned samples are cached in --cache-dir (default
``<data-dir>/brainscale_cache``).

    python examples/dvs_gesture.py --data-dir ~/data [--steps 2000]
    python examples/dvs_gesture.py --synthetic     # tiny fake data folder, a few steps
"""
import argparse
import os
import tempfile

from brainscale.datasets import dvs_gesture
from brainscale.datasets.synthetic import fake_dvs_gesture
from brainscale.train import TrainConfig, fit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", help="folder holding DVSGesture/ (required unless --synthetic)")
    ap.add_argument("--synthetic", action="store_true",
                    help="write a tiny fake data folder into a temp dir and train on it")
    ap.add_argument("--algorithm", default="es_d_rtrl", choices=["es_d_rtrl", "d_rtrl", "bptt"])
    ap.add_argument("--steps", type=int, default=None, help="default 2000 (--quick 200, "
                                                             "--synthetic 40)")
    ap.add_argument("--quick", action="store_true",
                    help="64 hidden neurons, 20 frames, 300 test samples")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--T", type=int, default=None, help="frames per sample (default 40)")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out-dir", default=None, help="default runs/dvs_gesture")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.synthetic and not args.data_dir:
        ap.error("--data-dir is required unless --synthetic")

    with tempfile.TemporaryDirectory() as tmp:
        data_dir, out_dir, cache = args.data_dir, args.out_dir, args.cache_dir
        subset, model, steps, T = {}, {}, args.steps or 2000, args.T or 40
        lr, batch_size = args.lr, args.batch_size
        if args.synthetic:
            data_dir = os.path.join(tmp, "data")
            fake_dvs_gesture(data_dir, users=([f"user{u:02d}_led" for u in range(1, 7)],
                                              ["user24_natural", "user25_led"]))
            out_dir, cache = out_dir or os.path.join(tmp, "run"), cache or os.path.join(tmp, "c")
            model, steps, lr, batch_size = {"hidden": [64]}, args.steps or 40, 5e-3, 16
            T = args.T or 20
        elif args.quick:
            subset, model, T = {"max_eval": 300}, {"hidden": [64]}, args.T or 20
            steps = args.steps or 200
        task = dvs_gesture.make_task(data_dir, T=T, **subset,
                                     cache_dir=cache or os.path.join(data_dir, "brainscale_cache"))
        cfg = TrainConfig(task="dvs_gesture", task_options=task.options, model=model,
                          algorithm=args.algorithm,
                          learner={"decay": 0.9} if args.algorithm == "es_d_rtrl" else {},
                          lr=lr, batch_size=batch_size, steps=steps,
                          eval_every=max(1, steps // 5), checkpoint_every=steps, seed=args.seed,
                          out_dir=out_dir)
        result = fit(cfg, task=task, resume=args.resume, plots=not args.synthetic)
    print(f"DVS Gesture / {args.algorithm}: test accuracy {result['final']['accuracy']:.3f} "
          f"after {result['step']} steps (chance 0.091)")
    return result


if __name__ == "__main__":
    main()
