"""Evidence accumulation: trials checked against the e-prop specification
(dt 1 ms; channels left/right/recall/noise x 10; 7 cues of 100 ms every
150 ms at 40 Hz, on the preferred side with p 0.7; recall at 40 Hz in the
last 150 ms; noise at 10 Hz; label = majority side; loss in the recall)."""
import math

import numpy as np
import pytest

from brainscale.tasks.evidence import DEFAULTS, evidence_batch, make_task

B = 256


@pytest.fixture(scope="module")
def batch():
    return evidence_batch(7, B, return_info=True)


def within(count, n, p, z=5.0):
    """``count`` successes of ``n`` Bernoulli(p) trials, within z sigma."""
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p))


def test_layout_matches_the_specification(batch):
    xs, ys, info = batch
    assert info["T"] == 7 * 150 + 1000 + 150 == 2200
    assert xs.shape == (2200, B, 40) and xs.dtype == np.float32
    assert ys.shape == (2200, B) and ys.dtype == np.int32
    assert set(np.unique(xs)) <= {0.0, 1.0}
    np.testing.assert_array_equal(info["cue_start"], [0, 150, 300, 450, 600, 750, 900])
    np.testing.assert_array_equal(info["cue_end"], [100, 250, 400, 550, 700, 850, 1000])
    assert info["t_delay"] == 1050 and info["t_recall"] == 2050


def cue_mask(T, starts, ends):
    m = np.zeros(T, bool)
    for a, b in zip(starts, ends):
        m[a:b] = True
    return m


def test_channel_groups_fire_only_in_their_windows(batch):
    xs, _, info = batch
    left, right, recall = xs[..., 0:10], xs[..., 10:20], xs[..., 20:30]
    T = info["T"]
    for b in range(B):
        s = info["sides"][b]
        on_left = cue_mask(T, info["cue_start"][s == 0], info["cue_end"][s == 0])
        on_right = cue_mask(T, info["cue_start"][s == 1], info["cue_end"][s == 1])
        assert left[~on_left, b].sum() == 0
        assert right[~on_right, b].sum() == 0
    assert recall[:2050].sum() == 0
    assert recall[2050:].sum() > 0


def test_sides_read_back_from_the_spikes_give_the_label(batch):
    """Each cue window carries ~40 expected spikes on its side: which group
    fired tells the side; the majority of those sides must be the label."""
    xs, ys, info = batch
    sides = np.zeros((B, 7), int)
    for k, (a, b) in enumerate(zip(info["cue_start"], info["cue_end"])):
        n_l = xs[a:b, :, 0:10].sum((0, 2))
        n_r = xs[a:b, :, 10:20].sum((0, 2))
        assert np.all((n_l > 0) != (n_r > 0))         # exactly one side fires
        sides[:, k] = n_r > 0
    np.testing.assert_array_equal(sides, info["sides"])
    label = (sides.sum(1) >= 4).astype(int)            # 7 cues: 4 or more is a majority
    np.testing.assert_array_equal(label, info["label"])
    np.testing.assert_array_equal(info["n_right"], sides.sum(1))
    np.testing.assert_array_equal(info["n_left"], 7 - sides.sum(1))
    assert 0.3 < label.mean() < 0.7


def test_loss_window_is_the_recall(batch):
    _, ys, info = batch
    assert np.all(ys[:2050] == -1)
    np.testing.assert_array_equal(ys[2050:], np.broadcast_to(info["label"], (150, B)))


def test_rates_within_binomial_bounds(batch):
    xs, _, info = batch
    s = info["sides"]
    n_cue_steps = 100 * 10 * np.sum(s == 0)            # left-cue windows x channels
    assert within(xs[:, :, 0:10].sum(), n_cue_steps, 0.04)
    n_cue_steps = 100 * 10 * np.sum(s == 1)
    assert within(xs[:, :, 10:20].sum(), n_cue_steps, 0.04)
    assert within(xs[2050:, :, 20:30].sum(), 150 * B * 10, 0.04)
    assert within(xs[:, :, 30:40].sum(), 2200 * B * 10, 0.01)
    on_pref = s == info["preferred"][:, None]
    assert within(on_pref.sum(), on_pref.size, 0.7)
    assert within(info["preferred"].sum(), B, 0.5)


def test_binomial_bound_rejects_a_wrong_rate(batch):
    """The bounds above are tight enough to catch 30 Hz instead of 40 Hz."""
    xs, _, info = batch
    assert not within(xs[2050:, :, 20:30].sum(), 150 * B * 10, 0.03)


def test_seeded_and_deterministic():
    a = evidence_batch(3, 4, delay=100)
    b = evidence_batch(3, 4, delay=100)
    c = evidence_batch(4, 4, delay=100)
    d = evidence_batch([3, 1], 4, delay=100)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], d[0])


def test_options_change_the_layout():
    xs, ys, info = evidence_batch(0, 3, n_cues=3, cue_duration=20, cue_spacing=30, delay=40,
                                  recall=10, dt=2.0, n_per_group=2, return_info=True)
    assert info["T"] == (3 * 30 + 40 + 10) // 2 == xs.shape[0]
    assert xs.shape[2] == 8
    np.testing.assert_array_equal(info["cue_start"], [0, 15, 30])
    np.testing.assert_array_equal(info["cue_end"], [10, 25, 40])
    assert info["t_recall"] == (90 + 40) // 2
    assert np.all(ys[:65] == -1) and np.all(ys[65:] >= 0)
    with pytest.raises(ValueError):
        evidence_batch(0, 1, cue_duration=200)        # longer than the spacing
    with pytest.raises(ValueError):
        evidence_batch(0, 1, cue_rate=2000.0)         # not a probability per step


def test_make_task():
    task = make_task(delay=50, n_eval=10)
    assert (task.name, task.n_in, task.n_out, task.metric) == ("evidence", 40, 2, "trial")
    x1, y1 = task.train_batch(1, 5, 4)
    x2, y2 = task.train_batch(1, 5, 4)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, task.train_batch(1, 6, 4)[0])
    assert x1.shape == (1050 + 50 + 150, 4, 40)
    ev = task.eval_batches(4)
    assert [x.shape[1] for x, _ in ev] == [4, 4, 4]
    ys = np.concatenate([y for _, y in ev], 1)
    assert np.all(ys[:, 10:] == -1) and np.all(ys[-1, :10] >= 0)
    assert task.options == {**DEFAULTS, "delay": 50.0, "n_eval": 10}
    assert DEFAULTS == dict(n_cues=7, cue_duration=100, cue_spacing=150, delay=1000, recall=150,
                            cue_rate=40, recall_rate=40, noise_rate=10, p_side=0.7,
                            n_per_group=10, dt=1)
    model = task.make_model({"n_rec": 10}, 0)
    assert model.n_rec == 10 and model.n_in == 40


# ------------------------------------------------------------ first-spike times

def test_first_spike_times_against_a_loop():
    from brainscale.tasks.first_spike import first_spike_times, sort_by_first_spike

    rng = np.random.default_rng(0)
    z = (rng.random((12, 5, 7)) < 0.08).astype(np.float32)
    z[:, 0, 3] = 0                                     # a silent neuron in one trial
    z[:, :, 6] = 0                                     # a neuron silent in every trial
    for start in (0, 4):
        want = np.full((5, 7), np.nan)
        for b in range(5):
            for n in range(7):
                for t in range(start, 12):
                    if z[t, b, n] > 0:
                        want[b, n] = (t - start) * 2.0
                        break
        np.testing.assert_array_equal(first_spike_times(z, dt=2.0, start=start), want)
    times = first_spike_times(z)
    order, mean = sort_by_first_spike(times)
    hand = {n: np.mean([t for t in times[:, n] if not np.isnan(t)])
            for n in range(7) if not np.all(np.isnan(times[:, n]))}
    assert list(order) == sorted(hand, key=lambda n: (hand[n], n))
    np.testing.assert_allclose(mean, [hand[n] for n in order])
    assert 6 not in order


def test_first_spike_plot_writes_a_png(tmp_path):
    from brainscale.tasks.first_spike import first_spike_times, plot_first_spikes

    z = (np.random.default_rng(1).random((30, 6, 4)) < 0.1).astype(np.float32)
    path = plot_first_spikes(first_spike_times(z), [0, 1, 0, 1, 1, 0], str(tmp_path / "f.png"),
                             names={0: "left", 1: "right"})
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
