"""Offline tasks: digits split and spike encoders, delayed match-to-sample."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from brainscale.tasks import (
    batches,
    dmts_batch,
    dmts_rates,
    latency_encode,
    load_digits_split,
    rank_order_encode,
    rate_encode,
)

# --------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def split():
    return load_digits_split(test_fraction=0.2, seed=0)


def test_digits_split_shapes_dtypes(split):
    x_tr, y_tr, x_te, y_te = split
    assert x_tr.shape[1] == x_te.shape[1] == 64
    assert len(x_tr) + len(x_te) == 1797
    assert len(x_tr) == len(y_tr) and len(x_te) == len(y_te)
    assert x_tr.dtype == x_te.dtype == np.float32
    assert y_tr.dtype == y_te.dtype == np.int32
    assert x_tr.min() >= 0.0 and x_tr.max() <= 1.0 and x_tr.max() == 1.0
    assert set(np.unique(y_tr)) == set(range(10)) == set(np.unique(y_te))


def test_digits_split_stratified(split):
    _, y_tr, _, y_te = split
    counts = np.bincount(np.concatenate([y_tr, y_te]), minlength=10)
    test_counts = np.bincount(y_te, minlength=10)
    np.testing.assert_array_equal(test_counts, np.rint(0.2 * counts).astype(int))


def test_digits_split_deterministic_and_seeded(split):
    again = load_digits_split(test_fraction=0.2, seed=0)
    for a, b in zip(split, again):
        np.testing.assert_array_equal(a, b)
    other = load_digits_split(test_fraction=0.2, seed=1)
    assert not np.array_equal(split[1], other[1])


def test_digits_split_disjoint(split):
    # rebuild the full set; each image appears in exactly one side
    from sklearn.datasets import load_digits

    full = (load_digits().data / 16.0).astype(np.float32)
    x_tr, _, x_te, _ = split
    rows = {r.tobytes() for r in np.concatenate([x_tr, x_te])}
    assert rows == {r.tobytes() for r in full}


def test_rate_encode_shape_determinism_and_rate():
    import jax

    imgs = np.full((8, 64), 0.5, dtype=np.float32)
    imgs[:, :8] = 0.0
    a = rate_encode(imgs, 400, jax.random.PRNGKey(3), max_rate=0.4)
    b = rate_encode(imgs, 400, jax.random.PRNGKey(3), max_rate=0.4)
    c = rate_encode(imgs, 400, 4, max_rate=0.4)
    assert a.shape == (400, 8, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    a = np.asarray(a)
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert a[:, :, :8].sum() == 0  # zero pixels never fire
    p = a[:, :, 8:].mean()           # expected 0.5 * 0.4
    assert abs(p - 0.2) < 0.01


def test_rate_encode_accepts_8x8_images(split):
    x = split[0][:4].reshape(4, 8, 8)
    s = rate_encode(x, 5, 0)
    assert s.shape == (5, 4, 64)


def test_latency_encode(split):
    x = split[0][:32]
    T = 20
    s = latency_encode(x, T)
    assert s.shape == (T, 32, 64) and s.dtype == np.float32
    counts = s.sum(0)
    np.testing.assert_array_equal(counts, (x > 0).astype(np.float32))  # once, zeros silent
    t_first = s.argmax(0)
    expected = np.rint((1 - x) * (T - 1))
    np.testing.assert_array_equal(t_first[x > 0], expected[x > 0])
    # brightest pixels fire at t=0
    assert np.all(s[0][x == 1.0] == 1.0)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, (3, 64), elements=st.floats(0, 1, width=32)),
       st.integers(2, 40))
def test_latency_brighter_fires_earlier(x, T):
    s = latency_encode(x, T)
    t = np.where(s.sum(0) > 0, s.argmax(0), T + 1)   # never fired: after the end
    assert np.all(t[x == 0] == T + 1)
    for n in range(x.shape[0]):
        nz = np.flatnonzero(x[n] > 0)
        order = nz[np.argsort(-x[n, nz], kind="stable")]
        assert np.all(np.diff(t[n, order]) >= 0)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, (3, 64), elements=st.floats(0, 1, width=32)),
       st.integers(1, 80), st.sampled_from(["spread", "one_per_step"]))
def test_rank_order(x, T, mode):
    s = rank_order_encode(x, T, mode=mode)
    assert s.shape == (T, 3, 64) and s.dtype == np.float32
    assert s.max(initial=0) <= 1.0
    counts = s.sum(0)
    assert np.all(counts[x == 0] == 0)
    assert np.all(counts <= 1)
    t = np.where(counts > 0, s.argmax(0), T + 1)   # never fired: after the end
    for n in range(x.shape[0]):
        nz = np.flatnonzero(x[n] > 0)
        order = nz[np.argsort(-x[n, nz], kind="stable")]
        assert np.all(np.diff(t[n, order]) >= 0)   # decreasing intensity = non-decreasing time
        if mode == "spread":
            assert counts[n].sum() == len(nz)        # every nonzero pixel fires
        else:
            assert counts[n].sum() == min(len(nz), T)
            assert np.all(s[:, n].sum(-1) <= 1)      # one per step
            fired = order[: min(len(nz), T)]
            np.testing.assert_array_equal(t[n, fired], np.arange(len(fired)))


def test_batches_cover_and_determinism():
    x = np.arange(103)[:, None].astype(np.float32)
    y = np.arange(103).astype(np.int32)
    got = list(batches(x, y, 10, rng=7))
    assert [len(b[0]) for b in got] == [10] * 10 + [3]
    seen = np.concatenate([b[1] for b in got])
    assert sorted(seen.tolist()) == list(range(103))
    for xb, yb in got:
        np.testing.assert_array_equal(xb[:, 0], yb)
    again = np.concatenate([b[1] for b in batches(x, y, 10, rng=7)])
    np.testing.assert_array_equal(seen, again)
    assert not np.array_equal(seen, np.arange(103))      # shuffled
    plain = np.concatenate([b[1] for b in batches(x, y, 10)])
    np.testing.assert_array_equal(plain, np.arange(103))  # rng=None keeps the order
    assert [len(b[0]) for b in batches(x, y, 10, rng=np.random.default_rng(0), drop_last=True)] == [10] * 10


# ----------------------------------------------------------------------- DMTS

SHORT = dict(fixation=2, sample=5, delay=7, test=4)


def test_dmts_shapes_dtypes_and_windows():
    xs, labels, info = dmts_batch(0, 16, **SHORT, return_info=True)
    T = 2 + 5 + 7 + 4
    assert xs.shape == (T, 16, 100) and xs.dtype == np.float32
    assert labels.shape == (T, 16) and labels.dtype == np.int32
    xs, labels = np.asarray(xs), np.asarray(labels)
    assert set(np.unique(xs)) <= {0.0, 1.0}
    assert np.all(labels[:14] == -1)
    assert np.all((labels[14:] == 0) | (labels[14:] == 1))
    np.testing.assert_array_equal(labels[14:], np.broadcast_to(np.asarray(info["match"]), (4, 16)))
    assert (info["t_sample"], info["t_delay"], info["t_test"], info["T"]) == (2, 7, 14, T)


def test_dmts_default_durations():
    xs, labels = dmts_batch(1, 2)
    assert xs.shape == (10 + 500 + 1000 + 500, 2, 100)
    assert np.all(np.asarray(labels)[:1510] == -1) and np.all(np.asarray(labels)[1510:] >= 0)
    xs, labels = dmts_batch(1, 2, delay=200, dt=2.0)
    assert xs.shape == ((10 + 500 + 200 + 500) // 2, 2, 100)


def test_dmts_deterministic():
    a = dmts_batch(5, 8, **SHORT)
    b = dmts_batch(5, 8, **SHORT)
    c = dmts_batch(6, 8, **SHORT)
    import jax

    d = dmts_batch(jax.random.PRNGKey(5), 8, **SHORT)
    for u, v, w in zip(a, b, d):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
        np.testing.assert_array_equal(np.asarray(u), np.asarray(w))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_dmts_match_fraction_and_directions():
    _, labels, info = dmts_batch(0, 4000, fixation=1, sample=1, delay=1, test=1,
                                 return_info=True)
    match = np.asarray(info["match"])
    assert abs(match.mean() - 0.5) < 0.04
    s, t = np.asarray(info["sample_dir"]), np.asarray(info["test_dir"])
    assert s.min() >= 0 and s.max() <= 7 and len(np.unique(s)) == 8
    np.testing.assert_array_equal(s == t, match == 1)
    assert len(np.unique(t[match == 0])) == 8
    np.testing.assert_array_equal(np.asarray(labels)[-1], match)


def _formula(theta, theta_pref):
    return 100.0 * np.exp(3 * np.cos(theta - theta_pref)) / math.e ** 3 + 1.0


def test_dmts_input_rates_follow_the_formula():
    kw = dict(fixation=10, sample=500, delay=300, test=100)
    xs, _, info = dmts_batch(3, 256, **kw, return_info=True)
    xs = np.asarray(xs)
    s = np.asarray(info["sample_dir"])
    sample_win = xs[10:510]          # (500, B, 100)
    delay_win = xs[510:810]
    # preferred-direction channel: direction k (of 8) is channel 12.5 k; even k are exact
    for k in (0, 2, 4, 6):
        ch = int(12.5 * k)
        trials = s == k
        assert trials.sum() > 10
        rate_hz = sample_win[:, trials, ch].mean() * 1000.0   # dt = 1 ms
        assert rate_hz == pytest.approx(_formula(0.0, 0.0), rel=0.08)   # 101 Hz
    # whole tuning curve, pooled over trials: relative offset between direction and channel
    theta_pref = 2 * np.pi * np.arange(100) / 100
    expected = _formula(2 * np.pi * s[:, None] / 8, theta_pref[None])   # (B, 100) Hz
    emp = sample_win.mean(0) * 1000.0                                   # (B, 100) Hz
    assert np.abs(emp.mean() - expected.mean()) < 0.05 * expected.mean()
    # background only in the delay window
    assert delay_win.mean() * 1000.0 == pytest.approx(1.0, rel=0.15)
    # deterministic rates agree exactly with the formula
    rates = np.asarray(dmts_rates(s, np.asarray(info["test_dir"]), **kw))
    np.testing.assert_allclose(rates[10:510], np.broadcast_to(expected, (500, 256, 100)), rtol=1e-5)
    np.testing.assert_allclose(rates[:10], 1.0)
    np.testing.assert_allclose(rates[510:810], 1.0)


def test_binary_copy_layout_by_hand():
    """String, delimiter, recall, padding: inputs one-hot then silent,
    labels the same bits during recall only; seeded."""
    from brainscale.tasks.binary_copy import binary_copy_batch, padded_length

    xs, ys = binary_copy_batch([3, 1], 4, 5, padded_length(5))
    assert padded_length(5) == 16 and xs.shape == (16, 4, 3) and ys.shape == (16, 4)
    bits = xs[:5, :, 1].astype(np.int32)
    assert np.array_equal(xs[:5].sum(-1), np.ones((5, 4))) and (xs[:5, :, 2] == 0).all()
    assert (xs[5, :, 2] == 1).all() and (xs[5, :, :2] == 0).all() and (xs[6:] == 0).all()
    assert (ys[:6] == -1).all() and np.array_equal(ys[6:11], bits) and (ys[11:] == -1).all()
    again, _ = binary_copy_batch([3, 1], 4, 5, 16)
    assert np.array_equal(again, xs)
    with pytest.raises(ValueError, match="T >= 2 L"):
        binary_copy_batch(0, 2, 5, 10)
