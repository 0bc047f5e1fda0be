"""A learner's calls refuse bad inputs and labels by name (argument, pytree
path, time step, sample) instead of training on them or failing inside JAX."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import brainscale as bs
from brainscale.models.recurrent_snn import recurrent_snn
from brainscale.nn.neurons import LIF

T, B, N_IN = 5, 3, 4


@pytest.fixture(scope="module")
def setup():
    learner = bs.online(recurrent_snn(N_IN, 2, [8], seed=0), "es_d_rtrl", optax.adam(1e-2))
    xs = jnp.asarray(np.random.default_rng(0).random((T, B, N_IN)) < 0.5, jnp.float32)
    ys = jnp.zeros((T, B), jnp.int32)
    return learner, learner.init(jax.random.PRNGKey(0), xs[0]), xs, ys


def test_clean_inputs_pass_and_bool_spikes_are_inputs(setup):
    learner, state, xs, ys = setup
    _, metrics = learner.train_sequence(state, xs=xs, ys=ys)      # keywords as jax.jit takes
    assert np.isfinite(float(metrics["loss"]))
    learner.predict(state, xs.astype(bool))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_input_named_with_step_and_sample(setup, value):
    learner, state, xs, ys = setup
    bad = xs.at[3, 1, 2].set(value)
    for call in (learner.train_sequence, learner.sequence_grad):
        with pytest.raises(ValueError, match=r"xs holds NaN or inf, first at time step t=3, "
                                             r"sample b=1, element \(2,\)"):
            call(state, bad, ys)
    with pytest.raises(ValueError, match=r"step: x holds NaN or inf, first at sample b=1"):
        learner.step(state, bad[3], ys[3])


@pytest.mark.parametrize("label, shown", [(2, "label 2"), (-5, "label -5"), (99, "label 99")])
def test_labels_outside_the_classes(setup, label, shown):
    learner, state, xs, ys = setup
    bad = ys.at[4, 2].set(label)
    with pytest.raises(ValueError, match=rf"ys: {shown} at time step t=4, sample b=2 is outside "
                                         r"\[-1, 2\)"):
        learner.train_sequence(state, xs, bad)


def test_float_labels_and_wrong_label_shape(setup):
    learner, state, xs, ys = setup
    with pytest.raises(ValueError, match="ys has dtype float32: cross_entropy takes integer"):
        learner.train_sequence(state, xs, ys.astype(jnp.float32))
    with pytest.raises(bs.CompileError, match=r"ys has shape \(5, 2\), expected leading axes "
                                              r"\(5, 3\)"):
        learner.train_sequence(state, xs, ys[:, :2])



@pytest.mark.parametrize("extra", ["trailing_one", "one_hot"])
def test_labels_with_a_class_axis_are_refused(setup, extra):
    """(T, B, 1) labels or integer one-hot (T, B, C) would broadcast inside the
    loss and train on nonsense; they are refused, naming the shape wanted."""
    learner, state, xs, ys = setup
    bad = ys[..., None] if extra == "trailing_one" else jax.nn.one_hot(ys, 2, dtype=jnp.int32)
    with pytest.raises(bs.CompileError, match=r"ys has shape \(5, 3, [12]\): cross_entropy "
                                              r"takes one integer class label per output, "
                                              r"shape \(5, 3\)"):
        learner.train_sequence(state, xs, bad)
    with pytest.raises(bs.CompileError, match="argmax"):
        learner.step(state, xs[0], bad[0])


def test_wrong_input_width_names_the_shape(setup):
    learner, state, xs, ys = setup
    with pytest.raises(bs.CompileError, match=r"does not accept inputs of per-sample shape "
                                              r"\(7,\)"):
        learner.train_sequence(state, jnp.zeros((T, B, 7)), ys)
    with pytest.raises(bs.CompileError, match=r"xs has shape \(5, 2, 4\), expected \(T, B, "
                                              r"\.\.\.\) with B = 3"):
        learner.train_sequence(state, xs[:, :2], ys[:, :2])


def test_under_a_callers_jit_shapes_are_still_checked(setup):
    learner, state, xs, ys = setup
    f = jax.jit(learner.sequence_grad)
    f(state, xs, ys)                           # values cannot be checked under jit: fine
    with pytest.raises(ValueError, match="cross_entropy takes integer"):
        f(state, xs, ys.astype(jnp.float32))


def test_check_false_skips_the_checks(setup):
    learner, state, xs, ys = setup
    quiet = bs.online(recurrent_snn(N_IN, 2, [8], seed=0), "es_d_rtrl", optax.adam(1e-2),
                      check=False)
    _, metrics = quiet.train_sequence(quiet.init(jax.random.PRNGKey(0), xs[0]),
                                      xs.at[0, 0, 0].set(np.nan), ys)
    assert not np.isfinite(float(metrics["grad_norm"]))


def test_float_targets_of_a_regression_loss_are_checked_finite():
    learner = bs.online(recurrent_snn(N_IN, 2, [8], seed=0), "bptt", loss=bs.losses.mse)
    xs = jnp.ones((T, B, N_IN))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    targets = jnp.zeros((T, B, 2)).at[2, 0, 1].set(np.nan)
    with pytest.raises(ValueError, match=r"ys holds NaN or inf, first at time step t=2, "
                                         r"sample b=0, element \(1,\)"):
        learner.sequence_grad(state, xs, targets)
    learner.sequence_grad(state, xs, jnp.zeros((T, B, 2)))


class _PerSample(nnx.Module):
    """Written for one sample, x (N_IN,): a LIF layer fed straight from x,
    whose state update fails deep in JAX (a broadcast) on a batched x."""

    def __init__(self):
        self.lif = LIF(N_IN, tau=5.0)
        self.out = nnx.Linear(N_IN, 2, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return self.out(self.lif(x))


PER_SAMPLE = r"written with per-sample shapes .* the learner adds the batch axis"


@pytest.mark.parametrize("algorithm", ["es_d_rtrl", "bptt"])
def test_init_with_a_whole_sequence_says_per_sample_shapes(algorithm):
    """init(rng, xs) instead of init(rng, xs[0]): the model sees a batched
    sample; the error names its per-sample shape and says who adds B."""
    learner = bs.online(_PerSample(), algorithm)
    xs = jnp.ones((T, B, N_IN))
    with pytest.raises(bs.CompileError, match=r"init: .* per-sample shape \(3, 4\) \(example_x "
                                              r"without its batch axis\)") as e:
        learner.init(jax.random.PRNGKey(0), xs)
    assert re.search(PER_SAMPLE, str(e.value)), str(e.value)
    learner.init(jax.random.PRNGKey(0), xs[0])               # the right call works


def test_init_with_one_unbatched_sample_or_a_scalar():
    learner = bs.online(recurrent_snn(N_IN, 2, [8], seed=0), "es_d_rtrl")
    with pytest.raises(bs.CompileError, match=r"per-sample shape \(\)") as e:
        learner.init(jax.random.PRNGKey(0), jnp.ones(N_IN))      # (N_IN,): no batch axis
    assert re.search(PER_SAMPLE, str(e.value))
    with pytest.raises(bs.CompileError, match="example_x needs a leading batch axis"):
        learner.init(jax.random.PRNGKey(0), jnp.float32(1.0))


def test_a_sequence_with_an_extra_axis_says_per_sample_shapes():
    learner = bs.online(_PerSample(), "es_d_rtrl")
    xs = jnp.ones((T, B, N_IN))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    with pytest.raises(bs.CompileError, match=r"train_sequence: .* per-sample shape \(1, 4\)") as e:
        learner.train_sequence(state, xs[:, :, None], jnp.zeros((T, B), jnp.int32))
    assert re.search(PER_SAMPLE, str(e.value))


def test_a_bug_in_the_step_keeps_its_own_error():
    """A NameError in the user's step is not dressed up as a shape error: the
    user sees their own exception and line."""
    def step(params, hidden, x):
        v = hidden["v"] * 0.9 + x @ params["w"]
        return {"v": v}, v * undefined_gain  # noqa: F821

    model = bs.StepModel(lambda rng, x: ({"w": jnp.ones((3, 2))}, {"v": jnp.zeros(2)}), step)
    learner = bs.online(model, "d_rtrl", optax.sgd(0.1))
    with pytest.raises(NameError, match="undefined_gain"):
        learner.init(jax.random.PRNGKey(0), jnp.ones((4, 3)))


def test_constants_under_the_callers_jit_are_checked_for_shape_only(setup):
    """Arrays captured by the caller's jit are constants: the check keeps the
    shapes and leaves the values (a traced computation) alone."""
    learner, state, xs, ys = setup
    loss = jax.jit(lambda s: learner.train_sequence(s, xs, ys)[1]["loss"])(state)
    assert np.isfinite(float(loss))
    with pytest.raises(bs.CompileError, match="expected leading axes"):
        jax.jit(lambda s: learner.train_sequence(s, xs, ys[:, :2])[1]["loss"])(state)
