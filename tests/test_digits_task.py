"""The digits training task: seeded batches, label window, evaluation set.

Samples are identified independently of the task's own index arithmetic: a
latency code with T = 17 puts pixel value ``k/16`` at step ``16 - k``, so
the raw 0..16 image is read back exactly from the spike times.
"""
from collections import Counter

import jax
import numpy as np
import pytest

from brainscale.tasks import latency_encode, load_digits_split, rank_order_encode, rate_encode
from brainscale.tasks.digits_task import EVAL_KEY_SEED, MODEL_DEFAULTS, make_task
from brainscale.train.task import metric_counts


def decode_latency17(xs):
    """(17, B, 64) latency spikes -> (B, 64) raw pixel values 0..16."""
    assert xs.shape[0] == 17 and set(np.unique(xs)) <= {0.0, 1.0}
    assert (xs.sum(0) <= 1).all()
    t = np.argmax(xs, axis=0)
    return np.where(xs.any(0), 16 - t, 0).astype(np.int64)


def pairs(images_raw, labels):
    return Counter((r.tobytes(), int(y)) for r, y in zip(images_raw, labels))


@pytest.fixture(scope="module")
def split():
    x_tr, y_tr, x_te, y_te = load_digits_split(test_fraction=0.2, seed=0)
    return np.rint(x_tr * 16).astype(np.int64), y_tr, np.rint(x_te * 16).astype(np.int64), y_te


@pytest.fixture(scope="module")
def lat():
    return make_task(encoding="latency", T=17, label_fraction=0.25)


def sample_labels(ys):
    """The one label of each sample (every labelled step agrees)."""
    lab = ys[-1]
    assert ((ys == lab[None]) | (ys == -1)).all()
    return lab


def test_same_seed_and_step_same_batch_in_any_call_order():
    a, b = make_task(T=6), make_task(T=6)
    first = a.train_batch(3, 5, 8)
    for step in range(5):                  # b draws other batches first
        b.train_batch(3, step, 8)
    again = b.train_batch(3, 5, 8)
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)
    assert first[0].shape == (6, 8, 64) and first[0].dtype == np.float32
    assert first[1].shape == (6, 8) and first[1].dtype == np.int32
    assert not np.array_equal(first[0], a.train_batch(3, 6, 8)[0])
    assert not np.array_equal(first[0], a.train_batch(4, 5, 8)[0])


def test_rate_code_key_is_seed_folded_with_step(lat):
    # the samples of (seed, step) read back from the latency task, encoded by hand
    seed, step, B, T = 7, 4, 8, 12
    images = decode_latency17(lat.train_batch(seed, step, B)[0]) / 16.0
    key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
    want = np.asarray(rate_encode(images, T, key, max_rate=0.6))
    got = make_task(T=T, max_rate=0.6).train_batch(seed, step, B)[0]
    np.testing.assert_array_equal(got, want)


def test_each_epoch_draws_the_training_set_once(lat, split):
    x_tr, y_tr = split[0], split[1]
    B = 2                                  # divides the 1438 training samples
    n = len(x_tr) // B
    for epoch in range(2):
        seen = [lat.train_batch(11, epoch * n + i, B) for i in range(n)]
        images = np.concatenate([decode_latency17(xs) for xs, _ in seen])
        labels = np.concatenate([sample_labels(ys) for _, ys in seen])
        assert pairs(images, labels) == pairs(x_tr, y_tr)
        if epoch == 0:
            order0 = images
    assert not np.array_equal(order0, images)          # reshuffled


def test_short_last_batch_dropped_without_repeats(lat, split):
    x_tr, y_tr = split[0], split[1]
    B = 100                                # 14 batches, 38 samples left out per epoch
    n = len(x_tr) // B
    epochs = []
    for epoch in range(2):
        seen = [lat.train_batch(0, epoch * n + i, B) for i in range(n)]
        images = np.concatenate([decode_latency17(xs) for xs, _ in seen])
        got = pairs(images, np.concatenate([sample_labels(ys) for _, ys in seen]))
        assert sum(got.values()) == n * B
        assert not got - pairs(x_tr, y_tr)             # a sub-multiset: nothing twice
        epochs.append(got)
    assert epochs[0] != epochs[1]


@pytest.mark.parametrize("T,fraction,n_lab", [(10, 0.3, 3), (24, 1 / 3, 8), (100, 0.07, 7),
                                              (5, 0.01, 1), (4, 1.0, 4)])
def test_label_window(T, fraction, n_lab, split):
    task = make_task(encoding="latency", T=T, label_fraction=fraction, max_eval=5)
    for xs, ys in [task.train_batch(0, 0, 4), task.eval_batches(5)[0]]:
        assert ys.shape == (T, xs.shape[1])
        assert (ys[:T - n_lab] == -1).all()
        assert (ys[T - n_lab:] >= 0).all() and (ys[T - n_lab:] == ys[-1][None]).all()
    np.testing.assert_array_equal(task.eval_batches(5)[0][1][-1], split[3][:5])


def test_eval_set_is_the_test_split_once_with_padding(lat, split):
    x_te, y_te = split[2], split[3]
    batches = lat.eval_batches(100)        # 359 = 3 x 100 + 59, padded to 400
    assert len(batches) == 4 and all(xs.shape == (17, 100, 64) for xs, _ in batches)
    xs = np.concatenate([b[0] for b in batches], axis=1)
    ys = np.concatenate([b[1] for b in batches], axis=1)
    np.testing.assert_array_equal(decode_latency17(xs[:, :359]), x_te)
    np.testing.assert_array_equal(ys[-1, :359], y_te)
    assert (xs[:, 359:] == 0).all() and (ys[:, 359:] == -1).all()
    perfect = np.zeros((17, 400, 10))
    perfect[:, np.arange(400), np.maximum(ys[-1], 0)] = 1.0
    assert metric_counts(perfect, ys, "trial") == (359, 359)


def test_rate_eval_set_is_fixed_and_independent_of_batch_size(split):
    task = make_task(T=5, max_rate=0.7, max_eval=30)
    a = task.eval_batches(30)[0][0]
    b = np.concatenate([xs for xs, _ in task.eval_batches(7)], axis=1)[:, :30]
    np.testing.assert_array_equal(a, b)
    want = rate_encode(split[2][:30] / 16.0, 5, jax.random.PRNGKey(EVAL_KEY_SEED), max_rate=0.7)
    np.testing.assert_array_equal(a, np.asarray(want))
    assert len(make_task(T=5, max_eval=30).eval_batches(8)) == 4


def test_latency_and_rank_order_through_make_task(lat):
    seed, step, B, T = 2, 9, 6, 10
    images = decode_latency17(lat.train_batch(seed, step, B)[0]) / 16.0
    for encoding, encode in [("latency", latency_encode), ("rank_order", rank_order_encode)]:
        task = make_task(encoding=encoding, T=T)
        xs, ys = task.train_batch(seed, step, B)
        np.testing.assert_array_equal(xs, encode(images, T))
        # one spike per nonzero pixel (T - 1 = 9 latency bins: raw 1 -> step 9 still fires)
        np.testing.assert_array_equal(xs.sum(0), (images > 0).astype(np.float32))
        np.testing.assert_array_equal(ys[-1], lat.train_batch(seed, step, B)[1][-1])


def test_options_recorded_and_bad_options_rejected():
    task = make_task(encoding="rank_order", T=9, max_eval=3)
    assert task.options["encoding"] == "rank_order" and task.options["T"] == 9
    assert task.metric == "trial" and (task.n_in, task.n_out) == (64, 10)
    for bad in [dict(encoding="poisson"), dict(T=0), dict(label_fraction=0.0),
                dict(max_rate=1.5), dict(max_eval=0)]:
        with pytest.raises(ValueError):
            make_task(**bad)
    with pytest.raises(ValueError, match="exceeds"):
        task.train_batch(0, 0, 5000)


def test_default_model_is_two_recurrent_lif_layers():
    from flax import nnx

    task = make_task(encoding="latency", T=4, max_eval=2)
    assert task.model_defaults == MODEL_DEFAULTS
    h1, h2 = MODEL_DEFAULTS["hidden"]
    # shapes only (nnx.eval_shape): no weights are drawn
    net = nnx.eval_shape(lambda: task.make_model(task.model_defaults, 0))
    assert [layer.linear.W.shape for layer in net.layers] == [(64 + h1, h1), (h1 + h2, h2)]
    assert net.out.W.shape == (h2, 10)
    assert all(type(layer.neuron).__name__ == "LIF" for layer in net.layers)
    assert net.layers[0].neuron.tau == MODEL_DEFAULTS["neuron_options"]["tau"]
    small = nnx.eval_shape(lambda: task.make_model({"hidden": [5, 3]}, 1))
    assert [layer.linear.W.shape for layer in small.layers] == [(64 + 5, 5), (5 + 3, 3)]
    assert small.out.W.shape == (3, 10)


def test_default_neurons_reset_hard_so_the_network_exports_to_nir():
    """Options given for the default LIF are merged over its defaults (a new
    tau keeps the hard reset); another neuron's options replace them."""
    from flax import nnx

    task = make_task(T=4, max_eval=2)

    def neurons(model):
        net = nnx.eval_shape(lambda: task.make_model(task.resolve_model(model), 0))
        return [layer.neuron for layer in net.layers]

    assert MODEL_DEFAULTS["neuron_options"] == {"tau": 10.0, "reset": "hard"}
    assert all(n.reset == "hard" and n.tau == 10.0 for n in neurons({}))
    assert all(n.reset == "hard" and n.tau == 20.0
               for n in neurons({"neuron_options": {"tau": 20.0}}))
    assert all(n.reset == "soft" for n in neurons({"neuron_options": {"reset": "soft"}}))
    assert task.resolve_model({"neuron_options": {"tau": 20.0}})["neuron_options"] == {
        "tau": 20.0, "reset": "hard"}                  # config.json records the merged value
    alif = neurons({"neuron": "alif", "neuron_options": {"tau_a": 50.0}})
    assert all(type(n).__name__ == "ALIF" and n.tau_a == 50.0 and n.tau == 20.0 for n in alif)


def test_example_quick_runs_both_algorithms(tmp_path, capsys):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "digits.py"
    spec = importlib.util.spec_from_file_location("digits_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--quick", "--out", str(tmp_path)])
    assert list(res) == ["es_d_rtrl", "bptt"]
    for algo, r in res.items():
        assert (tmp_path / algo / "metrics.jsonl").exists()
        assert r["history"][-1]["n_scored"] == 32          # max_eval of the quick task
    assert res["es_d_rtrl"]["gap_to_bptt"] == pytest.approx(
        100 * (res["es_d_rtrl"]["accuracy"] - res["bptt"]["accuracy"]))
    out = capsys.readouterr().out
    assert "test accuracy" in out and "vs bptt" in out
