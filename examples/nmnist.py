"""Train a recurrent LIF network on N-MNIST with ES-D-RTRL.

The data is not downloaded: put tonic's N-MNIST layout under --data-dir
(``<data-dir>/NMNIST/Train/<digit>/*.bin`` and ``Test``; a missing file is
an error that says what to download and where to extract it). Binned
samples are cached in --cache-dir (default ``<data-dir>/brainscale_cache``).

    python examples/nmnist.py --data-dir ~/data [--steps 2000] [--algorithm d_rtrl]
    python examples/nmnist.py --synthetic     # tiny fake data folder, a few steps
"""
from brainscale.datasets import nmnist
from brainscale.cli.dataset_example import run_dataset_example
from brainscale.datasets.synthetic import fake_nmnist


def main(argv=None):
    return run_dataset_example(
        argv, title="N-MNIST", folder="NMNIST", make_task=nmnist.make_task,
        write_fake=lambda d: fake_nmnist(d, n_per_class=(8, 4)), default_T=30,
        quick={"max_samples": 1000, "max_eval": 500}, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
