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
from brainscale.datasets import dvs_gesture
from brainscale.cli.dataset_example import run_dataset_example
from brainscale.datasets.synthetic import fake_dvs_gesture

FAKE_USERS = ([f"user{u:02d}_led" for u in range(1, 7)], ["user24_natural", "user25_led"])


def main(argv=None):
    return run_dataset_example(
        argv, title="DVS Gesture", folder="DVSGesture", make_task=dvs_gesture.make_task,
        write_fake=lambda d: fake_dvs_gesture(d, users=FAKE_USERS), default_T=40,
        quick={"max_eval": 300}, quick_T=20, synthetic_T=20,
        description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
