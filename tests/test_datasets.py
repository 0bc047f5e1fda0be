"""Neuromorphic datasets: files written in each real format are read back
through the real code path; binning, downsampling, cache, collate and every
bad-input error are checked against hand computations."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from brainscale.datasets import (DatasetError, FrameSpec, MissingDataError, batch_indices,
                                 cache_key, collate, to_frames)
from brainscale.datasets import dvs_gesture, nmnist, shd
from brainscale.datasets.events import EVENTS, HSDFile, read_dvs_gesture, read_nmnist
from brainscale.datasets.writers import write_dvs_npy, write_hsd_h5, write_nmnist_bin


def events(x, y, t, p):
    ev = np.zeros(len(x), EVENTS)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def hand_frames(k, c, y, x, shape):
    out = np.zeros(shape, np.float32)
    np.add.at(out, (np.asarray(k), np.asarray(c), np.asarray(y), np.asarray(x)), 1)
    return out


# ---------------------------------------------------------------- formats

def test_nmnist_bytes_and_roundtrip(tmp_path):
    path = tmp_path / "a.bin"
    x, y, p, t = [5, 33, 0, 17], [7, 0, 33, 239], [1, 0, 1, 0], [0x123456, 0, 2 ** 23 - 1, 99]
    write_nmnist_bin(path, x, y, p, t)
    raw = path.read_bytes()
    assert len(raw) == 20
    assert list(raw[:5]) == [5, 7, 0x80 | 0x12, 0x34, 0x56]
    assert list(raw[10:15]) == [0, 33, 0xFF, 0xFF, 0xFF]
    ev = read_nmnist(path)
    for name, want in zip("xypt", (x, y, p, t)):
        assert ev[name].tolist() == want


def test_shd_layout_and_roundtrip(tmp_path):
    path = tmp_path / "shd_train.h5"
    times = [np.array([0.0, 0.125, 0.5, 0.75]), np.array([0.25])]
    units = [np.array([0, 699, 3, 3]), np.array([42])]
    write_hsd_h5(path, times, units, [3, 19], [f"w{c}" for c in range(20)], [7, 8])
    with h5py.File(path) as f:
        assert f["spikes/times"].dtype.metadata["vlen"] == np.float16
        assert f["spikes/units"].dtype.metadata["vlen"] == np.uint16
        assert f["labels"][()].tolist() == [3, 19]
        assert f["extra/speaker"][()].tolist() == [7, 8]
        assert f["extra/keys"][()][2] == b"w2"
    h5 = HSDFile(path)
    assert h5.labels.tolist() == [3, 19]
    ev = h5.events(0)
    assert ev["t"].tolist() == [0, 125_000, 500_000, 750_000]
    assert ev["x"].tolist() == [0, 699, 3, 3]
    assert ev["y"].tolist() == [0] * 4 and ev["p"].tolist() == [0] * 4
    assert h5.events(1)["t"].tolist() == [250_000]
    h5.close()


def test_dvs_roundtrip(tmp_path):
    path = tmp_path / "3.npy"
    write_dvs_npy(path, [0, 127, 64], [127, 0, 5], [1, 0, 1], [10, 11, 5000])
    arr = np.load(path, allow_pickle=False)
    assert arr.shape == (3, 4) and arr[:, 3].tolist() == [10, 11, 5000]
    ev = read_dvs_gesture(path)
    assert ev["x"].tolist() == [0, 127, 64] and ev["y"].tolist() == [127, 0, 5]
    assert ev["p"].tolist() == [1, 0, 1] and ev["t"].tolist() == [10_000, 11_000, 5_000_000]


def test_urls_match_tonic():
    from tonic.datasets import DVSGesture, NMNIST
    from tonic.datasets.hsd import HSD, SSC

    assert nmnist.SPLITS["train"][1:] == (NMNIST.train_filename, NMNIST.train_url)
    assert nmnist.SPLITS["test"][1:] == (NMNIST.test_filename, NMNIST.test_url)
    assert dvs_gesture.SPLITS["train"][1:] == (DVSGesture.train_filename, DVSGesture.train_url)
    assert dvs_gesture.SPLITS["test"][1:] == (DVSGesture.test_filename, DVSGesture.test_url)
    assert shd.BASE_URL == HSD.base_url and SSC.valid_zip == "ssc_valid.h5.zip"
    assert nmnist.SENSOR_SIZE == NMNIST.sensor_size
    assert dvs_gesture.SENSOR_SIZE == DVSGesture.sensor_size == (128, 128, 2)
    assert shd.SENSOR_SIZE == HSD.sensor_size
    assert dvs_gesture.N_CLASSES == len(DVSGesture.classes)


# ---------------------------------------------------------------- frames

def test_bins_fixed_count_by_hand():
    # t0 = 100, span = 999 - 100 + 1 = 900, k = (t - 100) * 3 // 900
    ev = events([0, 1, 2, 3, 1], [0, 1, 2, 0, 1], [100, 399, 400, 999, 700], [0, 1, 1, 0, 1])
    k = [0, 0, 1, 2, 2]   # 0, 897//900, 900//900, 2697//900, 1800//900
    spec = FrameSpec((4, 3, 2), T=3, flatten=False)
    got = to_frames(ev, spec)
    assert got.dtype == np.float32 and got.shape == (3, 2, 3, 4)
    np.testing.assert_array_equal(got, hand_frames(k, ev["p"], ev["y"], ev["x"], (3, 2, 3, 4)))
    # origin "zero": span = 1000, k = t * 3 // 1000
    got0 = to_frames(ev, FrameSpec((4, 3, 2), T=3, origin="zero", flatten=False))
    k0 = [0, 1, 1, 2, 2]   # 300//1000, 1197//1000, 1200//1000, 2997//1000, 2100//1000
    np.testing.assert_array_equal(got0, hand_frames(k0, ev["p"], ev["y"], ev["x"], got0.shape))


def test_bins_time_window_by_hand_and_like_tonic():
    ev = events([0, 1, 1, 2, 1, 2, 0], [0] * 7, [50, 60, 149, 150, 250, 420, 455],
                [0, 1, 1, 0, 1, 0, 1])
    k = [0, 0, 0, 1, 2, 3, 4]      # (t - 50) // 100
    spec = FrameSpec((3, 1, 2), time_window=100, flatten=False)
    got = to_frames(ev, spec)
    np.testing.assert_array_equal(got, hand_frames(k, ev["p"], ev["y"], ev["x"], (5, 2, 1, 3)))
    from tonic.transforms import ToFrame

    tonic_frames = ToFrame(sensor_size=(3, 1, 2), time_window=100, include_incomplete=True)(
        np.array(ev))
    np.testing.assert_array_equal(got, tonic_frames.astype(np.float32))
    # T cuts after T windows; binary marks pixels with an event
    cut = to_frames(ev, FrameSpec((3, 1, 2), T=2, time_window=100, binary=True, flatten=False))
    np.testing.assert_array_equal(cut, np.minimum(got[:2], 1))


def test_downsample_merge_flatten():
    rng = np.random.default_rng(0)
    n = 400
    ev = events(rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 9999, n)),
                rng.integers(0, 2, n))
    k = (ev["t"] - ev["t"].min()) * 4 // (ev["t"].max() - ev["t"].min() + 1)
    half = to_frames(ev, FrameSpec((34, 34, 2), T=4, downsample=0.5, flatten=False))
    assert half.shape == (4, 2, 17, 17)
    np.testing.assert_array_equal(half, hand_frames(k, ev["p"], ev["y"] // 2, ev["x"] // 2,
                                                    (4, 2, 17, 17)))
    spec = FrameSpec((34, 34, 2), T=4, downsample=[10, 5], merge_polarity=True)
    assert spec.frame_shape == (50,)
    flat = to_frames(ev, spec)
    want = hand_frames(k, 0 * ev["p"], ev["y"] * 5 // 34, ev["x"] * 10 // 34, (4, 1, 5, 10))
    np.testing.assert_array_equal(flat, want.reshape(4, 50))
    assert flat.sum() == n
    # a factor maps x in 0..W-1 to trunc(x f) in 0..trunc((W-1) f): W' = 18 for 35 * 0.5
    odd = to_frames(events([0, 33, 34], [0] * 3, [0] * 3, [0] * 3),
                    FrameSpec((35, 1, 1), T=1, downsample=0.5))
    assert odd.shape == (1, 18) and np.flatnonzero(odd[0]).tolist() == [0, 16, 17]


def test_events_outside_sensor_name_field_value_and_size():
    ev = events([0, 34], [0, 1], [0, 1], [0, 1])
    with pytest.raises(DatasetError) as e:
        to_frames(ev, FrameSpec((34, 34, 2), T=2), source="/d/x.bin")
    msg = str(e.value)
    assert msg.startswith("/d/x.bin") and "'x'" in msg and "34" in msg and "(34, 34, 2)" in msg
    with pytest.raises(DatasetError, match=r"'p' has max value 1.*\(700, 1, 1\)"):
        to_frames(events([3], [0], [0], [1]), FrameSpec((700, 1, 1), T=1), source="s")


# ---------------------------------------------------------------- cache

def _nmnist_dir(root, per_class=2, classes=(0, 1), split="Train", n=20, seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        for i in range(per_class):
            t = np.sort(rng.integers(0, 300_000, n))
            write_nmnist_bin(os.path.join(root, "NMNIST", split, str(c), f"{i}.bin"),
                             rng.integers(0, 34, n), rng.integers(0, 34, n),
                             rng.integers(0, 2, n), t)


def test_cache_hits_on_second_load(tmp_path):
    _nmnist_dir(tmp_path)
    cache = tmp_path / "cache"
    first = nmnist.load(tmp_path, "train", cache_dir=cache, T=5, downsample=0.5)
    assert first.labels.tolist() == [0, 0, 1, 1]
    a = [first.frames(i) for i in range(4)]
    assert first.source_reads == 4 and first.cache.misses == 4
    second = nmnist.load(tmp_path, "train", cache_dir=cache, T=5, downsample=0.5)
    b = [second.frames(i) for i in range(4)]
    assert second.source_reads == 0 and second.cache.hits == 4
    uncached = nmnist.load(tmp_path, "train", T=5, downsample=0.5)
    for i in range(4):
        np.testing.assert_array_equal(a[i], b[i])
        np.testing.assert_array_equal(b[i], uncached.frames(i))
    files = sorted(os.listdir(first.cache.dir))
    assert files == ["000000.npz", "000001.npz", "000002.npz", "000003.npz", "meta.json"]
    with np.load(os.path.join(first.cache.dir, files[0]), allow_pickle=False) as z:
        assert str(z["key"]) == first.cache.key
    meta = json.loads((tmp_path / "cache" / os.path.basename(first.cache.dir) /
                       "meta.json").read_text())
    assert meta["transform"]["downsample"] == 0.5 and meta["dataset"]["split"] == "train"


def test_cache_key_changes_with_every_parameter(tmp_path):
    base = FrameSpec((34, 34, 2), T=10)
    changed = [dict(sensor_size=(34, 34, 1)), dict(T=11), dict(time_window=1000),
               dict(origin="zero"), dict(downsample=0.5), dict(merge_polarity=True),
               dict(binary=True), dict(flatten=False)]
    ident = {"name": "NMNIST", "split": "train", "fingerprint": "f", "reader": {}}
    keys = {cache_key(ident, base.params())}
    for change in changed:
        params = FrameSpec(**{**base.__dict__, **change}).params()
        keys.add(cache_key(ident, params))
    for change in (dict(name="SHD"), dict(split="test"), dict(fingerprint="g"),
                   dict(reader={"first_saccade_only": True})):
        keys.add(cache_key({**ident, **change}, base.params()))
    assert len(keys) == 1 + len(changed) + 4
    # a source file of another size changes the fingerprint, hence the key
    _nmnist_dir(tmp_path)
    k1 = nmnist.load(tmp_path, "train", cache_dir=tmp_path / "c", T=3).cache.key
    with open(tmp_path / "NMNIST" / "Train" / "0" / "0.bin", "ab") as f:
        f.write(bytes(5))
    assert nmnist.load(tmp_path, "train", cache_dir=tmp_path / "c", T=3).cache.key != k1


def test_nan_in_cached_frames_is_an_error(tmp_path):
    _nmnist_dir(tmp_path, per_class=1, classes=(0,))
    ds = nmnist.load(tmp_path, "train", cache_dir=tmp_path / "c", T=3)
    bad = np.zeros((3, 2312), np.float32)
    bad[1, 7] = np.nan
    ds.cache.put(0, bad)
    with pytest.raises(DatasetError, match=r"000000\.npz.*non-finite.*frame 1"):
        ds.frames(0)


# ---------------------------------------------------------------- collate

def test_collate_pads_crops_and_labels():
    a = np.arange(1, 5, dtype=np.float32)[:, None] * np.ones((4, 2), np.float32)   # 4 frames
    b = np.ones((7, 2), np.float32)                                                 # 7 frames
    xs, ys = collate([(a, 3), (b, 1)], T=6, label_fraction=0.5, batch_size=3)
    assert xs.shape == (6, 3, 2) and xs.dtype == np.float32 and ys.dtype == np.int32
    np.testing.assert_array_equal(xs[:4, 0], a)
    assert not xs[4:, 0].any() and not xs[:, 2].any()
    np.testing.assert_array_equal(xs[:, 1], b[:6])
    assert ys[:, 0].tolist() == [-1, -1, 3, 3, -1, -1]     # last ceil(0.5 * 4) of its 4 steps
    assert ys[:, 1].tolist() == [-1, -1, -1, 1, 1, 1]      # cut to 6 steps, last 3
    assert ys[:, 2].tolist() == [-1] * 6                  # padding row
    _, ys_all = collate([(a, 3)], T=5)
    assert ys_all[:, 0].tolist() == [3, 3, 3, 3, -1]


def test_batch_indices_pure_and_cover_each_epoch():
    a = [batch_indices(10, 4, seed=3, step=s) for s in range(5)]
    b = [batch_indices(10, 4, seed=3, step=s) for s in (4, 3, 2, 1, 0)][::-1]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    stream = np.concatenate(a)                 # 20 positions = epochs 0 and 1
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    np.testing.assert_array_equal(stream[:10], np.random.default_rng([3, 0]).permutation(10))
    assert not np.array_equal(batch_indices(10, 4, 4, 0), a[0])
    assert sorted(batch_indices(3, 7, 0, 0)[:3]) == [0, 1, 2]    # B > n


# ---------------------------------------------------------------- tasks

def test_task_batches_deterministic_and_eval_padded(tmp_path):
    _nmnist_dir(tmp_path, per_class=3, classes=(0, 1, 2))
    _nmnist_dir(tmp_path, per_class=1, classes=(0, 1, 2), split="Test", seed=1)
    task = nmnist.make_task(tmp_path, T=4, downsample=0.5, label_fraction=0.5)
    assert (task.n_in, task.n_out, task.metric) == (2 * 17 * 17, 10, "trial")
    xs, ys = task.train_batch(0, 5, 4)
    xs2, ys2 = task.train_batch(0, 5, 4)
    np.testing.assert_array_equal(xs, xs2)
    np.testing.assert_array_equal(ys, ys2)
    assert xs.shape == (4, 4, 578) and ys[:2].tolist() == [[-1] * 4] * 2
    assert set(ys[2:].ravel()) <= {0, 1, 2}
    batches = task.eval_batches(2)
    assert len(batches) == 2
    xe, ye = batches[1]
    assert xe.shape == (4, 2, 578) and ye[:, 1].tolist() == [-1] * 4 and ye[3, 0] == 2
    assert len(nmnist.make_task(tmp_path, T=4, max_eval=2).eval_batches(8)) == 1
    from flax import nnx

    model = nnx.eval_shape(lambda: task.make_model({"hidden": [8]}, 0))   # shapes only
    assert model.layers[0].linear.W.shape == (578 + 8, 8) and model.out.W.shape == (8, 10)
    assert task.model_defaults == nmnist.MODEL_DEFAULTS


def test_registry_builds_each_task_from_its_recorded_options(tmp_path):
    from brainscale.train.registry import make_task

    _nmnist_dir(tmp_path, per_class=1, classes=(0, 1))
    _nmnist_dir(tmp_path, per_class=1, classes=(0, 1), split="Test")
    for kind, splits in (("SHD", ("train", "test")), ("SSC", ("train", "valid", "test"))):
        for split in splits:
            write_hsd_h5(tmp_path / kind / f"{kind.lower()}_{split}.h5", [np.array([0.5])],
                         [np.array([3])], [1], ["k"])
    for split in ("ibmGestureTrain", "ibmGestureTest"):
        write_dvs_npy(tmp_path / "DVSGesture" / split / "user01_led" / "2.npy", [1], [2], [1],
                      [7])
    for name, n_in, n_out in (("nmnist", 2312, 10), ("shd", 700, 20), ("ssc", 700, 35),
                              ("dvs_gesture", 2048, 11)):
        task = make_task(name, {"data_dir": str(tmp_path), "T": 3, "max_eval": 1})
        assert (task.name, task.n_in, task.n_out) == (name, n_in, n_out)
        again = make_task(name, json.loads(json.dumps(task.options)))
        assert again.options == task.options and again.options["T"] == 3
        xs, ys = again.train_batch(1, 0, 2)
        assert xs.shape == (3, 2, n_in) and ys.shape == (3, 2)


# ---------------------------------------------------------------- errors

def test_missing_files_say_what_to_download_and_where(tmp_path):
    with pytest.raises(MissingDataError) as e:
        nmnist.load(tmp_path, "test", T=3)
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "NMNIST", "Test") in msg and "test.zip" in msg
    assert nmnist.SPLITS["test"][2] in msg and f"extract it into {tmp_path}/NMNIST" in msg
    with pytest.raises(MissingDataError) as e:
        shd.load_ssc(tmp_path, "valid", T=3)
    msg = str(e.value)
    assert msg.startswith(os.path.join(str(tmp_path), "SSC", "ssc_valid.h5"))
    assert "https://zenkelab.org/datasets/ssc_valid.h5.zip" in msg and f"{tmp_path}/SSC" in msg
    with pytest.raises(MissingDataError) as e:
        dvs_gesture.load(tmp_path, "train", T=3)
    msg = str(e.value)
    assert "ibmGestureTrain.tar.gz" in msg and "https://figshare.com/ndownloader/files/38022171" \
        in msg and f"extract it into {tmp_path}/DVSGesture" in msg


def test_malformed_files_name_the_problem(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(12))
    with pytest.raises(DatasetError, match=r"bad\.bin: .*12 bytes, not a multiple of 5"):
        read_nmnist(bad)
    h5 = tmp_path / "nokey.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("labels", data=np.zeros(1, np.uint16))
        f.create_dataset("spikes/times", (1,), dtype=h5py.vlen_dtype(np.float16))
    with pytest.raises(DatasetError, match=r"nokey\.h5: HDF5 file has no 'spikes/units'"):
        HSDFile(h5).labels
    npy = tmp_path / "1.npy"
    np.save(npy, np.zeros((5, 3)))
    with pytest.raises(DatasetError, match=r"1\.npy: .*shape \(N, 4\).*\(5, 3\)"):
        read_dvs_gesture(npy)
    nan_h5 = tmp_path / "SHD" / "shd_train.h5"
    write_hsd_h5(nan_h5, [np.array([0.1, np.nan])], [np.array([1, 2])], [0], ["a"],
                 times_dtype=np.float32)
    ds = shd.load(tmp_path, "train", T=3, time_window=1000)
    with pytest.raises(DatasetError, match=r"shd_train\.h5 \(sample 0\): .*non-finite"):
        ds.frames(0)


def test_labels_out_of_range(tmp_path):
    write_hsd_h5(tmp_path / "SHD" / "shd_test.h5", [np.array([0.1])] * 2,
                 [np.array([1])] * 2, [4, 20], ["k"] * 20)
    with pytest.raises(DatasetError, match=r"shd_test\.h5 \(sample 1\): label 20 .*20 classes"):
        shd.load(tmp_path, "test", T=3, time_window=1000)
    _nmnist_dir(tmp_path, per_class=1, classes=(12,))
    with pytest.raises(DatasetError, match=r"Train/12/0\.bin: label 12 .*10 classes"):
        nmnist.load(tmp_path, "train", T=3)
    write_dvs_npy(tmp_path / "DVSGesture" / "ibmGestureTest" / "user01_led" / "11.npy",
                  [0], [0], [0], [0])
    with pytest.raises(DatasetError, match=r"11\.npy: label 11 .*11 classes"):
        dvs_gesture.load(tmp_path, "test", T=3)


def test_import_without_tonic_or_h5py(tmp_path):
    ok = tmp_path / "ok.bin"
    ok.write_bytes(bytes(10))
    code = ("import sys; sys.modules['tonic'] = None; sys.modules['h5py'] = None\n"
            "import brainscale, brainscale.datasets\n"
            "from brainscale.datasets import nmnist, shd, dvs_gesture, writers, synthetic\n"
            "from brainscale.datasets.events import read_nmnist\n"
            "try:\n    read_nmnist(sys.argv[1])\n"
            "except ImportError as e:\n    print('ImportError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(ok)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ImportError: the neuromorphic datasets need 'tonic'" in out.stdout
