"""The copy task: trial layout, encoding, labels, seeding, the Task, and the
per-token ("step") metric on a hand-made output array."""
import jax
import numpy as np
import pytest

from brainscale.tasks.copy_task import (BLANK, TRIGGER, copy_batch, make_model,
                                        make_task)
from brainscale.train.task import Task, metric_counts


def _ids(xs):
    """Token ids back from the one-hot inputs."""
    assert np.all(xs.sum(-1) == 1.0) and set(np.unique(xs)) == {0.0, 1.0}
    return xs.argmax(-1)


@pytest.mark.parametrize("lag,n_tokens", [(0, 10), (7, 10), (3, 1), (480, 10)])
def test_layout_tokens_lag_trigger_targets(lag, n_tokens):
    B = 5
    xs, ys, tok = copy_batch(11, B, lag=lag, n_tokens=n_tokens, return_tokens=True)
    T = 2 * n_tokens + lag
    assert xs.shape == (T, B, 10) and xs.dtype == np.float32
    assert ys.shape == (T, B) and ys.dtype == np.int32
    assert tok.shape == (B, n_tokens)
    assert tok.min() >= 1 and tok.max() <= 8
    ids = _ids(xs)
    np.testing.assert_array_equal(ids[:n_tokens], tok.T)                  # the tokens
    assert np.all(ids[n_tokens:n_tokens + lag] == BLANK)                  # the lag of 0s
    assert np.all(ids[n_tokens + lag:] == TRIGGER)                        # n_tokens triggers
    assert np.all(ys[:n_tokens + lag] == -1)                              # no loss before recall
    np.testing.assert_array_equal(ys[n_tokens + lag:], tok.T)             # recall = tokens in order


def test_one_hot_by_hand():
    xs, ys, tok = copy_batch(3, 1, lag=2, n_tokens=2, return_tokens=True)
    a, b = (int(t) for t in tok[0])
    want = np.zeros((6, 10), np.float32)
    for t, k in enumerate([a, b, 0, 0, 9, 9]):
        want[t, k] = 1.0
    np.testing.assert_array_equal(xs[:, 0], want)
    np.testing.assert_array_equal(ys[:, 0], [-1, -1, -1, -1, a, b])


def test_sequence_length_500():
    xs, ys = copy_batch(0, 2, lag=480)
    assert xs.shape == (500, 2, 10)
    assert (ys >= 0).sum() == 20 and np.all(ys[490:] >= 1)


def test_tokens_cover_1_to_8_uniformly():
    _, _, tok = copy_batch(5, 4000, lag=0, return_tokens=True)
    counts = np.bincount(tok.ravel(), minlength=10)
    assert counts[0] == counts[9] == 0
    # 40000 draws, 5000 expected per token, std ~66: 5 sigma
    assert np.all(np.abs(counts[1:9] - 5000) < 330)


def test_deterministic_per_seed_and_key():
    a = copy_batch(7, 4, lag=5)
    b = copy_batch(7, 4, lag=5)
    c = copy_batch(8, 4, lag=5)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[1], c[1])
    k1 = copy_batch(jax.random.PRNGKey(1), 4, lag=5)[1]
    np.testing.assert_array_equal(k1, copy_batch(jax.random.PRNGKey(1), 4, lag=5)[1])
    assert not np.array_equal(k1, copy_batch(jax.random.PRNGKey(2), 4, lag=5)[1])


def test_bad_options_rejected():
    with pytest.raises(ValueError):
        copy_batch(0, 2, lag=-1)
    with pytest.raises(ValueError):
        copy_batch(0, 0)
    with pytest.raises(ValueError):
        make_model({"n_hiden": 4}, 0)


def test_task_batches_seeded_and_eval_padded():
    task = make_task(lag=3, n_eval=10)
    assert isinstance(task, Task) and task.metric == "step"
    assert (task.n_in, task.n_out) == (10, 10)
    assert task.options == {"lag": 3, "n_tokens": 10, "n_eval": 10}
    x1, y1 = task.train_batch(0, 5, 4)
    x2, y2 = task.train_batch(0, 5, 4)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, task.train_batch(0, 6, 4)[1])
    assert not np.array_equal(y1, task.train_batch(1, 5, 4)[1])
    ev = task.eval_batches(4)
    assert [b[0].shape for b in ev] == [(23, 4, 10)] * 3
    labelled = np.concatenate([(b[1] >= 0).any(0) for b in ev])
    np.testing.assert_array_equal(labelled, [True] * 10 + [False] * 2)   # 2 padding rows
    assert np.all(ev[-1][1][:, 2:] == -1)
    again = task.eval_batches(4)                                         # fixed set
    np.testing.assert_array_equal(ev[1][1], again[1][1])


def test_default_model_is_gru_then_linear_readout():
    task = make_task(lag=1)
    model = task.make_model({**task.model_defaults, "n_hidden": 6}, 0)
    out = np.asarray(model(np.eye(10, dtype=np.float32)[3]))
    assert out.shape == (10,)
    h = np.asarray(model.rnn.h[...])                     # the GRU's new state
    assert np.any(h != 0)
    np.testing.assert_allclose(out, h @ np.asarray(model.out.W[...]) + np.asarray(model.out.b[...]),
                               rtol=1e-6, atol=1e-6)
    assert model.rnn.n_hidden == 6 and task.model_defaults == {"n_hidden": 128}


def test_step_metric_by_hand():
    # T = 3 steps, B = 2 rows, 4 classes; labels -1 are not scored
    out = np.zeros((3, 2, 4))
    out[0, 0, 2] = 1.0   # step 0, row 0: predicts 2, label -1 (ignored)
    out[0, 1, 1] = 1.0   # step 0, row 1: predicts 1, label 1 -> correct
    out[1, 0, 3] = 1.0   # step 1, row 0: predicts 3, label 3 -> correct
    out[1, 1, 0] = 1.0   # step 1, row 1: predicts 0, label 2 -> wrong
    out[2, 0, 1] = 1.0   # step 2, row 0: predicts 1, label 2 -> wrong
    out[2, 1, 2] = 1.0   # step 2, row 1: predicts 2, label 2 -> correct
    ys = np.array([[-1, 1], [3, 2], [2, 2]])
    assert metric_counts(out, ys, "step") == (3, 5)


def test_step_metric_on_copy_batch():
    xs, ys = copy_batch(2, 3, lag=4)
    perfect = np.eye(10)[np.maximum(ys, 0)]             # logits = one-hot of the label
    assert metric_counts(perfect, ys, "step") == (30, 30)
    echo = xs                                            # repeat the input: 9 during recall
    assert metric_counts(echo, ys, "step") == (0, 30)
