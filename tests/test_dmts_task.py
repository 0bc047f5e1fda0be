"""The DMTS training task: seeded batches, a fixed evaluation set, the label
window, shapes and the default model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brainscale.tasks.dmts import dmts_batch
from brainscale.tasks.dmts_task import (EVAL_SEED, MODEL_DEFAULTS, make_model, make_task,
                                        trial_windows)
from brainscale.train.task import Task, metric_counts

# short trials: 3 + 7 + 11 + 5 = 26 steps
SMALL = dict(fixation=3, sample=7, delay=11, test=5, n_in=12, n_eval=10)
GEN = {k: v for k, v in SMALL.items() if k != "n_eval"}


@pytest.fixture(scope="module")
def task():
    return make_task(**SMALL)


def test_default_task_shapes_and_windows():
    t = make_task()
    assert isinstance(t, Task)
    assert (t.name, t.n_in, t.n_out, t.metric) == ("dmts", 100, 2, "trial")
    assert t.options == {"delay": 1000.0, "fixation": 10.0, "sample": 500.0, "test": 500.0,
                         "dt": 1.0, "n_in": 100, "p_match": 0.5, "n_eval": 512}
    assert trial_windows() == {"t_sample": 10, "t_delay": 510, "t_test": 1510, "T": 2010}
    xs, ys = t.eval_batches(2)[0]
    assert len(t.eval_batches(2)) == 256
    assert xs.shape == (2010, 2, 100) and xs.dtype == np.float32
    assert ys.shape == (2010, 2) and ys.dtype == np.int32
    assert np.all(ys[:1510] == -1) and np.all(ys[1510:] >= 0)
    assert set(np.unique(xs)) <= {0.0, 1.0}
    # dt = 2 ms halves the number of steps
    assert trial_windows(dt=2.0)["T"] == 1005


def test_train_batch_is_the_documented_function_of_seed_and_step(task):
    a_x, a_y = task.train_batch(3, 7, 8)
    b_x, b_y = task.train_batch(3, 7, 8)
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    ref_x, ref_y = dmts_batch(jax.random.fold_in(jax.random.PRNGKey(3), 7), 8, **GEN)
    np.testing.assert_array_equal(a_x, np.asarray(ref_x))
    np.testing.assert_array_equal(a_y, np.asarray(ref_y))


def test_other_steps_and_seeds_differ(task):
    x0, _ = task.train_batch(0, 0, 8)
    x1, _ = task.train_batch(0, 1, 8)
    x2, _ = task.train_batch(1, 0, 8)
    assert not np.array_equal(x0, x1)
    assert not np.array_equal(x0, x2)


def test_label_window_is_the_test_window_and_says_match(task):
    xs, ys = task.train_batch(5, 2, 8)
    _, _, info = dmts_batch(jax.random.fold_in(jax.random.PRNGKey(5), 2), 8,
                            return_info=True, **GEN)
    w = trial_windows(**{k: GEN[k] for k in ("fixation", "sample", "delay", "test")})
    assert (w["t_test"], w["T"]) == (3 + 7 + 11, 26) == (info["t_test"], info["T"])
    assert xs.shape == (26, 8, 12) and ys.shape == (26, 8)
    assert np.all(ys[:w["t_test"]] == -1)
    match = (np.asarray(info["sample_dir"]) == np.asarray(info["test_dir"])).astype(np.int32)
    np.testing.assert_array_equal(ys[w["t_test"]:], np.broadcast_to(match, (5, 8)))
    assert 0 < match.sum() < 8        # both classes occur in this batch


def test_eval_set_is_fixed_and_independent_of_the_batch_size(task):
    def rows(batch_size):
        batches = list(task.eval_batches(batch_size))
        assert len(batches) == -(-10 // batch_size)
        xs = np.concatenate([b[0] for b in batches], 1)
        ys = np.concatenate([b[1] for b in batches], 1)
        assert xs.shape[1] == ys.shape[1] == len(batches) * batch_size
        return xs, ys

    x4, y4 = rows(4)
    x10, y10 = rows(10)
    x4b, y4b = rows(4)
    np.testing.assert_array_equal(x4, x4b)
    np.testing.assert_array_equal(y4, y4b)
    np.testing.assert_array_equal(x4[:, :10], x10)
    np.testing.assert_array_equal(y4[:, :10], y10)
    # padding rows (10, 11 of the third batch of 4): no input, no label
    assert np.all(x4[:, 10:] == 0) and np.all(y4[:, 10:] == -1)
    # trial i is dmts_batch(fold_in(PRNGKey(EVAL_SEED), i), 1)
    ref_x, ref_y = dmts_batch(jax.random.fold_in(jax.random.PRNGKey(EVAL_SEED), 7), 1, **GEN)
    np.testing.assert_array_equal(x10[:, 7], np.asarray(ref_x)[:, 0])
    np.testing.assert_array_equal(y10[:, 7], np.asarray(ref_y)[:, 0])
    assert np.all(y10[:21] == -1) and np.all(y10[21:] >= 0)


def test_trial_metric_scores_the_test_window(task):
    _, ys = task.eval_batches(10)[0]
    out = np.zeros(ys.shape + (2,), np.float32)
    label = ys[-1]
    out[-1, np.arange(10), label] = 1.0          # right at the last labelled step
    out[0, np.arange(10), 1 - label] = 100.0     # wrong before the window: not scored
    assert metric_counts(out, ys, task.metric) == (10, 10)


def test_default_model_options_and_output():
    net = make_model({"hidden": [6], "surrogate": {"name": "arctan", "alpha": 3.0}}, seed=0,
                     n_in=12)
    rec = net.layers[0]
    assert rec.neuron.tau_a == MODEL_DEFAULTS["tau_a"] and rec.neuron.beta == MODEL_DEFAULTS["beta"]
    assert rec.neuron.spike_fn.alpha == 3.0 and net.out.b is None
    assert net.out.tau == MODEL_DEFAULTS["tau_out"]
    y = net(jnp.ones((12,), jnp.float32))
    assert y.shape == (2,)
    # same seed, same weights; another seed, other weights
    w = lambda m: np.asarray(m.layers[0].linear.W[...])
    np.testing.assert_array_equal(w(net), w(make_model({"hidden": [6]}, 0, n_in=12)))
    assert not np.array_equal(w(net), w(make_model({"hidden": [6]}, 1, n_in=12)))
    with pytest.raises(ValueError, match="unknown option"):
        make_model({"hiden": [6]})
    with pytest.raises(ValueError, match="surrogate"):
        make_model({"surrogate": {"name": "nope"}})


@pytest.mark.parametrize("bad", [dict(test=0), dict(dt=0), dict(n_eval=0), dict(p_match=2.0),
                                 dict(delay=-1)])
def test_bad_options_are_rejected(bad):
    with pytest.raises(ValueError):
        make_task(**bad)
