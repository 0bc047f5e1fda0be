"""flax.nnx models compile as they are: nnx.Linear, nnx.Conv, nnx.Sequential
and user modules carrying brainscale.HiddenState. In float64, D-RTRL equals
BPTT (one feed-forward layer of elementwise neurons) and BPTT equals an
independent jax.grad of a hand-written scan of the module; a trained learner
survives an nnx.split / nnx.merge round trip."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import brainscale as bs
from brainscale.nn.neurons import LIF
from gradcheck import float64


F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)


@pytest.fixture(autouse=True)
def x64():
    with float64():
        yield


class ConvLIF(nnx.Module):
    """A user module: a convolution drives a (H, W, C) map of leaky neurons
    with its own surrogate spike (a jax.custom_jvp); a dense readout of the
    flattened spikes."""

    def __init__(self, rngs, hw=6, c=3, n_out=2):
        self.conv = nnx.Conv(1, c, kernel_size=(3, 3), padding="SAME", rngs=rngs, **F64)
        self.v = bs.HiddenState(jnp.zeros((hw, hw, c)))
        self.out = nnx.Linear(hw * hw * c, n_out, rngs=rngs, **F64)

    def __call__(self, x):
        v = 0.8 * self.v[...] + 3.0 * self.conv(x)
        s = _spike(v - 1.0)
        self.v[...] = v - s
        return self.out(s.reshape(-1))


@jax.custom_jvp
def _spike(x):
    return (x >= 0).astype(x.dtype)


@_spike.defjvp
def _spike_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    sg = jax.nn.sigmoid(4.0 * x)
    return _spike(x), 4.0 * sg * (1.0 - sg) * t


def sequential(rngs):
    return nnx.Sequential(nnx.Linear(4, 6, rngs=rngs, **F64), LIF(6, tau=5.0, v_th=0.5),
                          nnx.Linear(6, 2, rngs=rngs, **F64))


def hand_grads(module, xs, ys):
    """jax.grad of a scan over nnx.merge'd copies of ``module``, vmapped over
    the batch: no BrainScale code on this path."""
    graphdef, params, hidden, rest = nnx.split(module, nnx.Param, bs.HiddenState, ...)
    B = xs.shape[1]
    h0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,) + a.shape), hidden)

    def loss(p):
        def one(h, x, y):
            m = nnx.merge(graphdef, p, h, rest)
            out = m(x)
            return nnx.state(m, bs.HiddenState), bs.losses.cross_entropy(out, y)

        def body(h, inp):
            h, ls = jax.vmap(one)(h, *inp)
            return h, jnp.mean(ls)

        return jnp.mean(jax.lax.scan(body, h0, (xs, ys))[1])

    return jax.grad(loss)(params).to_pure_dict()


def check_exact(module, xs, ys, algorithms=("bptt", "d_rtrl")):
    grads = {}
    for alg in algorithms:
        learner = bs.online(module, alg)
        grads[alg], _ = learner.sequence_grad(learner.init(jax.random.PRNGKey(0), xs[0]), xs, ys)
    ref = hand_grads(module, xs, ys)
    for name, g in grads.items():
        for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(g)[0], jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name} {jax.tree_util.keystr(path)}")
            if path[-1].key == "kernel":
                assert np.max(np.abs(b)) > 1e-6, jax.tree_util.keystr(path)
    return learner


def test_nnx_sequential_of_linear_and_lif():
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (20, 3, 4)).astype(jnp.float64)
    ys = jax.random.randint(jax.random.PRNGKey(2), (20, 3), 0, 2)
    learner = check_exact(sequential(nnx.Rngs(0)), xs, ys)
    assert [op.kind for op in learner.graph.ops] == ["dense", "bias", "dense", "bias"]


def test_nnx_conv_in_a_user_module():
    """nnx.Conv on one unbatched sample (flax adds and removes a unit batch
    axis around conv + bias). The shared kernel drives many neurons; D-RTRL
    keeps a trace per neuron and patch element and is exact, like BPTT;
    ES-D-RTRL compiles."""
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.4, (12, 2, 6, 6, 1)).astype(jnp.float64)
    ys = jax.random.randint(jax.random.PRNGKey(2), (12, 2), 0, 2)
    module = ConvLIF(nnx.Rngs(0))
    learner = check_exact(module, xs, ys)
    graph = learner.graph_for(xs[0])
    assert [op.kind for op in graph.ops] == ["conv", "bias", "dense", "bias"]
    assert graph.ops[0].y_shape == (6, 6, 3)          # the unit axis is gone
    es = bs.online(module, "es_d_rtrl")
    g, _ = es.sequence_grad(es.init(jax.random.PRNGKey(0), xs[0]), xs, ys)
    assert np.max(np.abs(g["conv"]["kernel"])) > 0


def test_trained_learner_survives_nnx_split_and_merge():
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (20, 3, 4)).astype(jnp.float64)
    ys = jax.random.randint(jax.random.PRNGKey(2), (20, 3), 0, 2)
    module = sequential(nnx.Rngs(0))
    learner = bs.online(module, "es_d_rtrl", optimizer=optax.adam(0.05))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    for _ in range(5):
        state, _ = learner.train_sequence(state, xs, ys)
    expected = learner.predict(state, xs)

    bs.to_nnx(module, state.params)
    graphdef, nnx_state = nnx.split(module)
    pure = jax.tree.map(np.asarray, nnx_state.to_pure_dict())     # e.g. saved to disk
    restored_state = nnx.state(nnx.merge(graphdef, nnx_state))
    nnx.replace_by_pure_dict(restored_state, pure)
    restored = nnx.merge(graphdef, restored_state)

    learner2 = bs.online(restored, "es_d_rtrl")
    state2 = learner2.init(jax.random.PRNGKey(0), xs[0])
    for a, b in zip(jax.tree.leaves(state2.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(learner2.predict(state2, xs), expected)


@pytest.mark.parametrize("kind", [nnx.Variable, nnx.BatchStat])
def test_state_written_in_another_variable_type_is_named(kind):
    """A flax user's habit: the membrane in an ``nnx.Variable`` (or a
    BatchStat). Its write would be lost between steps; the error names the
    variable and the fix, and a constant Variable that is only read is fine."""
    class Leaky(nnx.Module):
        def __init__(self, rngs):
            self.fc = nnx.Linear(4, 3, rngs=rngs, **F64)
            self.gain = nnx.Variable(jnp.full((3,), 2.0))       # read only: fine
            self.layer = nnx.Dict(mem=kind(jnp.zeros((3,))))

        def __call__(self, x):
            mem = 0.9 * self.layer["mem"][...] + self.gain[...] * self.fc(x)
            self.layer["mem"][...] = mem
            return mem

    learner = bs.online(Leaky(nnx.Rngs(0)), "es_d_rtrl")
    with pytest.raises(bs.CompileError, match=r"(?s)Leaky's step writes.*HiddenState.*"
                                              r"path: \['layer'\]\['mem'\]"):
        learner.init(jax.random.PRNGKey(0), jnp.ones((2, 4)))
