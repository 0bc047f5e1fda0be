"""Every unreadable, empty, truncated or mistyped dataset file, and every
absurd timestamp, is a ``DatasetError`` naming the file (and sample); the
frame cache notices a source rewritten at the same size and a cache file of
the wrong shape. A property test feeds random bytes and truncations to each
reader: nothing but ``DatasetError`` comes out."""
import os

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainscale.datasets import DatasetError, nmnist
from damaged_bytes import damaged
from brainscale.datasets.events import HSDFile, read_dvs_gesture, read_nmnist
from brainscale.datasets.writers import write_dvs_npy, write_hsd_h5, write_nmnist_bin


def read_hsd(path):
    h5 = HSDFile(path)
    try:
        return [h5.events(i) for i in range(len(h5))]
    finally:
        h5.close()


READERS = {"nmnist": (read_nmnist, "x.bin"), "dvs": (read_dvs_gesture, "3.npy"),
           "shd": (read_hsd, "shd_train.h5")}


def good_file(kind, path):
    if kind == "nmnist":
        write_nmnist_bin(path, [1, 2, 3], [4, 5, 6], [0, 1, 0], [10, 20, 30])
    elif kind == "dvs":
        write_dvs_npy(path, [1, 2], [3, 4], [0, 1], [5, 6])
    else:
        write_hsd_h5(path, [np.array([0.1, 0.2]), np.array([0.3])],
                     [np.array([1, 2]), np.array([3])], [0, 1], ["a", "b"])


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "folder"])
def test_damaged_files_name_the_file(tmp_path, kind, damage):
    read, name = READERS[kind]
    path = tmp_path / name
    good_file(kind, path)
    data = path.read_bytes()
    if damage == "folder":
        os.unlink(path)
        os.makedirs(path)
    else:
        path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2 + 1],
                          "garbage": b"\x89not a dataset file" * 7}[damage])
    with pytest.raises(DatasetError) as e:
        read(str(path))
    assert str(e.value).startswith(str(path))


def test_shd_times_as_byte_strings_name_file_and_sample(tmp_path):
    path = tmp_path / "shd_train.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("spikes/times", data=np.array([[b"0.1", b"0.2"]] * 2))
        f.create_dataset("spikes/units", data=np.array([[1, 2]] * 2))
        f.create_dataset("labels", data=np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"shd_train.h5 \(sample 0\): 'spikes/times' must be "
                                           r"numbers"):
        read_hsd(str(path))


@pytest.mark.parametrize("t_ms", [1e30, 2.0 ** 62, -5.0])
def test_absurd_dvs_timestamps_refused_not_dropped(tmp_path, t_ms):
    path = tmp_path / "3.npy"
    t = np.arange(2000, dtype=np.float64)
    t[1234] = t_ms
    write_dvs_npy(path, np.ones(2000), np.ones(2000), np.zeros(2000), t, dtype=np.float64)
    with pytest.raises(DatasetError, match=r"3.npy: event 1234 has timestamp .* ms, outside "
                                           r"\[0, 6e\+06\] ms"):
        read_dvs_gesture(str(path))


def test_absurd_shd_timestamp_names_the_sample(tmp_path):
    path = tmp_path / "shd_train.h5"
    write_hsd_h5(path, [np.array([0.1]), np.array([0.2, 5000.0])],
                 [np.array([1]), np.array([1, 2])], [0, 1], ["a", "b"], times_dtype=np.float32)
    with pytest.raises(DatasetError, match=r"\(sample 1\): event 1 has timestamp 5000 s"):
        read_hsd(str(path))


def test_empty_nmnist_sample_in_a_dataset_is_named(tmp_path):
    root = tmp_path / "NMNIST" / "Train" / "0"
    write_nmnist_bin(root / "a.bin", [1], [1], [0], [5])
    (root / "b.bin").write_bytes(b"")
    ds = nmnist.load(tmp_path, "train", T=2)
    ds.frames(0)
    with pytest.raises(DatasetError, match=r"b.bin: N-MNIST event file is empty"):
        ds.frames(1)


def test_a_missing_extra_is_not_reported_as_a_damaged_file(tmp_path, monkeypatch):
    write_nmnist_bin(tmp_path / "NMNIST" / "Train" / "0" / "a.bin", [1], [1], [0], [5])
    ds = nmnist.load(tmp_path, "train", T=2)

    def missing(name):
        raise ImportError(f"the neuromorphic datasets need {name!r}")
    monkeypatch.setattr("brainscale.datasets.events.require", missing)
    with pytest.raises(ImportError, match="neuromorphic datasets need"):
        ds.frames(0)


def test_cache_sees_a_rewrite_at_the_same_size_and_a_wrong_shape(tmp_path):
    f = tmp_path / "NMNIST" / "Train" / "0" / "a.bin"
    write_nmnist_bin(f, [1, 2], [1, 2], [0, 0], [5, 6])
    cache = tmp_path / "cache"
    a = nmnist.load(tmp_path, "train", T=2, cache_dir=cache)
    before = a.frames(0)
    write_nmnist_bin(f, [30, 31], [30, 31], [1, 1], [5, 6])       # same size, new events
    st_ = os.stat(f)
    os.utime(f, ns=(st_.st_atime_ns, st_.st_mtime_ns))
    b = nmnist.load(tmp_path, "train", T=2, cache_dir=cache)
    assert b.cache.key != a.cache.key
    assert not np.array_equal(b.frames(0), before) and b.source_reads == 1
    np.savez(b.cache.path(0), frames=np.zeros((3, 5), np.uint8), key=np.array(b.cache.key))
    with pytest.raises(DatasetError, match=r"000000.npz: cached frames have shape \(3, 5\), "
                                           r"expected \(2, 2312\)"):
        nmnist.load(tmp_path, "train", T=2, cache_dir=cache).frames(0)


@pytest.mark.parametrize("kind", sorted(READERS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_bytes_and_truncations_only_raise_dataset_error(tmp_path, kind, data):
    read, name = READERS[kind]
    path = tmp_path / name
    good_file(kind, path)
    path.write_bytes(damaged(data, path.read_bytes(), 400))
    try:
        read(str(path))
    except DatasetError as e:
        assert str(e).startswith(str(path))
