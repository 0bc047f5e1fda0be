"""Train a recurrent ALIF network on SHD (or SSC with --ssc) with ES-D-RTRL.

The data is not downloaded: put tonic's layout under --data-dir
(``<data-dir>/SHD/shd_train.h5``, ``shd_test.h5``; for SSC
``<data-dir>/SSC/ssc_{train,valid,test}.h5``; a missing file is an error
that says what to download and where to unzip it). Samples become 100
frames of 10 ms; binned samples are cached in --cache-dir (default
``<data-dir>/brainscale_cache``).

    python examples/shd.py --data-dir ~/data [--steps 2000] [--ssc]
    python examples/shd.py --synthetic     # tiny fake data folder, a few steps
"""
from brainscale.datasets import shd
from brainscale.cli.dataset_example import run_dataset_example
from brainscale.datasets.synthetic import fake_hsd


def _ssc(args, title, make_task, write_fake):
    if not args.ssc:
        return title, make_task, write_fake
    return "SSC", shd.make_ssc_task, lambda d: fake_hsd(d, "SSC", n_per_class=(6, 2))


def main(argv=None):
    return run_dataset_example(
        argv, title="SHD", folder="SHD/ or SSC", make_task=shd.make_task,
        write_fake=lambda d: fake_hsd(d, "SHD", n_per_class=(6, 2)), default_T=100,
        quick={"max_samples": 1000, "max_eval": 500}, description=__doc__.split("\n")[0],
        extra_args=lambda ap: ap.add_argument(
            "--ssc", action="store_true", help="Spiking Speech Commands (35 classes)"),
        choose=_ssc)


if __name__ == "__main__":
    main()
