"""Tiny fake data folders in the real layouts, with a learnable class signal.

For demos and tests where the real data cannot be downloaded: every file is
written by ``brainscale.datasets.writers`` in the real format, so training
on them goes through the real reading code. Class ``c`` of ``K`` puts its
events around a class-specific place (a pixel blob for N-MNIST and DVS
Gesture, a band of cochlear channels for SHD/SSC) plus uniform noise.
Deterministic given ``seed``.
"""
from __future__ import annotations

import os

import numpy as np

from brainscale.datasets.writers import write_dvs_npy, write_hsd_h5, write_nmnist_bin

__all__ = ["fake_nmnist", "fake_hsd", "fake_dvs_gesture"]


def _blob(rng, c, K, W, H, n, radius, spread, drift=(0.0, 0.0), frac_t=None):
    """``n`` pixel events around the point at angle ``2 pi c / K`` on a
    circle about the centre, 20 % of them uniform noise."""
    ang = 2 * np.pi * c / K
    cx, cy = (W - 1) / 2 + radius * np.cos(ang), (H - 1) / 2 + radius * np.sin(ang)
    frac_t = rng.random(n) if frac_t is None else frac_t
    x = rng.normal(cx + drift[0] * frac_t, spread)
    y = rng.normal(cy + drift[1] * frac_t, spread)
    noise = rng.random(n) < 0.2
    x[noise], y[noise] = rng.uniform(0, W, noise.sum()), rng.uniform(0, H, noise.sum())
    x = np.clip(np.round(x), 0, W - 1).astype(np.int64)
    y = np.clip(np.round(y), 0, H - 1).astype(np.int64)
    return x, y


def fake_nmnist(data_dir, n_per_class=(4, 2), n_events=3000, seed=0) -> str:
    """``<data_dir>/NMNIST/{Train,Test}/<digit>/<k>.bin``; ``n_per_class`` is
    (train, test). Events span about 300 ms. Returns the dataset folder."""
    rng = np.random.default_rng([seed, 1])
    for folder, n in zip(("Train", "Test"), n_per_class):
        for c in range(10):
            for k in range(n):
                t = np.sort(rng.integers(0, 300_000, n_events))
                x, y = _blob(rng, c, 10, 34, 34, n_events, 10, 2.5, (3, 3), t / 300_000)
                p = rng.integers(0, 2, n_events)
                write_nmnist_bin(os.path.join(data_dir, "NMNIST", folder, str(c),
                                              f"{k:05d}.bin"), x, y, p, t)
    return os.path.join(data_dir, "NMNIST")


def fake_hsd(data_dir, kind="SHD", n_per_class=(3, 2), n_spikes=3000, seed=0) -> str:
    """``<data_dir>/<kind>/<kind>_<split>.h5`` for SHD (20 classes; train,
    test) or SSC (35 classes; train, valid, test); ``n_per_class`` is (train,
    other splits). Spikes fall in 0.05..0.6 s. Returns the dataset folder."""
    K, splits = {"SHD": (20, ("train", "test")), "SSC": (35, ("train", "valid", "test"))}[kind]
    rng = np.random.default_rng([seed, 2])
    for split in splits:
        n = n_per_class[0] if split == "train" else n_per_class[1]
        times, units, labels = [], [], []
        for c in range(K):
            for _ in range(n):
                centre = 700 * (c + 0.5) / K
                u = np.clip(np.round(rng.normal(centre, 700 / K / 3, n_spikes)), 0, 699)
                noise = rng.random(n_spikes) < 0.2
                u[noise] = rng.integers(0, 700, noise.sum())
                t = np.sort(rng.uniform(0.05, 0.6, n_spikes))
                times.append(t)
                units.append(u.astype(np.uint16))
                labels.append(c)
        keys = [f"{kind.lower()}-word-{c}" for c in range(K)]
        speakers = rng.integers(0, 10, len(labels))
        meta = ({"gender": rng.integers(0, 2, 10), "age": rng.integers(20, 60, 10),
                 "body_height": rng.uniform(1.5, 2.0, 10)} if kind == "SHD" else None)
        write_hsd_h5(os.path.join(data_dir, kind, f"{kind.lower()}_{split}.h5"), times, units,
                     labels, keys, speakers, meta)
    return os.path.join(data_dir, kind)


def fake_dvs_gesture(data_dir, users=(("user01_fluorescent", "user02_led"),
                                      ("user24_natural",)), n_events=50_000, seed=0) -> str:
    """``<data_dir>/DVSGesture/ibmGesture{Train,Test}/<user>/<label>.npy``,
    one recording of each of the 11 gestures per user (as in the real
    release); ``users`` is (train users, test users). Each recording is a
    blob drifting for about 1.5 s. Returns the dataset folder."""
    rng = np.random.default_rng([seed, 3])
    for folder, names in zip(("ibmGestureTrain", "ibmGestureTest"), users):
        for user in names:
            for c in range(11):
                t0 = int(rng.integers(0, 5_000))          # recordings start anywhere
                t = np.sort(rng.integers(t0, t0 + 1_500, n_events))
                ang = 2 * np.pi * c / 11
                x, y = _blob(rng, c, 11, 128, 128, n_events, 35, 6,
                             (20 * np.sin(ang), -20 * np.cos(ang)), (t - t0) / 1_500)
                p = rng.integers(0, 2, n_events)
                write_dvs_npy(os.path.join(data_dir, "DVSGesture", folder, user, f"{c}.npy"),
                              x, y, p, t)
    return os.path.join(data_dir, "DVSGesture")
