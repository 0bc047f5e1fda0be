"""Rate RNN cells against numpy implementations of their equations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from brainscale.nn.rnn import GRU, LSTM, VanillaRNN
from brainscale.nn.state import HiddenState
from nnx_run import check_batched, run as _run

N_IN, N_H, T = 4, 6, 12


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _params(m):
    return {k: np.asarray(v[...], np.float64) for k, v in vars(m).items() if isinstance(v, nnx.Param)}


def _xs(seed=0):
    return np.random.default_rng(seed).normal(size=(T, N_IN)).astype(np.float32)


def test_vanilla_rnn_matches_numpy():
    m = VanillaRNN(N_IN, N_H, rngs=nnx.Rngs(0))
    p = _params(m)
    assert set(p) == {"W_ih", "W_hh", "b_h"}
    xs = _xs()
    y, _ = _run(m, xs)
    h = np.zeros(N_H)
    for t in range(T):
        h = np.tanh(xs[t] @ p["W_ih"] + h @ p["W_hh"] + p["b_h"])
        np.testing.assert_allclose(y[t], h, atol=1e-5)


def test_gru_matches_numpy():
    m = GRU(N_IN, N_H, rngs=nnx.Rngs(1))
    p = _params(m)
    assert set(p) == {"W_iz", "W_hz", "b_z", "W_ir", "W_hr", "b_r", "W_in", "W_hn", "b_in", "b_hn"}
    for k in p:
        if k.startswith("b_"):
            p[k] = np.random.default_rng(len(k)).normal(size=N_H)
            getattr(m, k)[...] = jnp.asarray(p[k], jnp.float32)
    xs = _xs(1)
    y, _ = _run(m, xs)
    h = np.zeros(N_H)
    for t in range(T):
        x = xs[t]
        z = _sig(x @ p["W_iz"] + h @ p["W_hz"] + p["b_z"])
        r = _sig(x @ p["W_ir"] + h @ p["W_hr"] + p["b_r"])
        n = np.tanh(x @ p["W_in"] + p["b_in"] + r * (h @ p["W_hn"] + p["b_hn"]))
        h = (1 - z) * n + z * h
        np.testing.assert_allclose(y[t], h, atol=1e-5)


def test_lstm_matches_numpy():
    m = LSTM(N_IN, N_H, rngs=nnx.Rngs(2))
    p = _params(m)
    assert len(p) == 12
    np.testing.assert_array_equal(p["b_f"], 1.0)
    xs = _xs(2)
    y, st = _run(m, xs)
    h, c = np.zeros(N_H), np.zeros(N_H)
    for t in range(T):
        x = xs[t]
        i = _sig(x @ p["W_ii"] + h @ p["W_hi"] + p["b_i"])
        f = _sig(x @ p["W_if"] + h @ p["W_hf"] + p["b_f"])
        g = np.tanh(x @ p["W_ig"] + h @ p["W_hg"] + p["b_g"])
        o = _sig(x @ p["W_io"] + h @ p["W_ho"] + p["b_o"])
        c = f * c + i * g
        h = o * np.tanh(c)
        np.testing.assert_allclose(y[t], h, atol=1e-5)
        np.testing.assert_allclose(st[t]["c"], c, atol=1e-5)


@pytest.mark.parametrize("cls", [VanillaRNN, GRU, LSTM])
def test_each_weight_used_by_one_op_and_gets_gradient(cls):
    m = cls(N_IN, N_H, rngs=nnx.Rngs(3))
    graphdef, params, rest = nnx.split(m, nnx.Param, ...)
    n_mat = sum(leaf.ndim == 2 for leaf in jax.tree.leaves(params))
    x = jnp.asarray(_xs(3)[0])

    def loss(params, rest, x):
        mm = nnx.merge(graphdef, params, rest, copy=True)
        mm(x)
        return jnp.sum(mm(x) ** 2)   # two steps so recurrent weights matter

    prims = [e.primitive.name for e in jax.make_jaxpr(
        lambda p, r, x: nnx.merge(graphdef, p, r)(x))(params, rest, x).jaxpr.eqns]
    assert prims.count("dot_general") == n_mat
    grads = jax.grad(loss)(params, rest, x)
    for g in jax.tree.leaves(grads):
        assert np.abs(np.asarray(g)).sum() > 0


@pytest.mark.parametrize("cls", [VanillaRNN, GRU, LSTM])
def test_jit_and_vmap(cls):
    xs = np.random.default_rng(5).normal(size=(T, 3, N_IN)).astype(np.float32)
    check_batched(lambda: cls(N_IN, N_H, rngs=nnx.Rngs(4)), xs, atol=1e-6)
    _, hidden, _ = nnx.split(cls(N_IN, N_H, rngs=nnx.Rngs(4)), HiddenState, ...)
    for leaf in jax.tree.leaves(hidden):
        assert leaf.shape == (N_H,)
