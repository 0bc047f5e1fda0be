"""The label-associative HP readout rule (``bs.rules.hp_assoc``): H against
a numpy computation step by step in an online learner, one-shot recall as
a cosine nearest-prototype classifier, a missing label named, and its
theta-gradient against finite differences."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import brainscale as bs
from brainscale.nn.hp_synapse import HPLinear
from transforms.plasticity.rules.hybrid import HPTheta, hp_assoc_update

A = "params['readout']['A']"
ALPHA, BETA, ETA, GAMMA = 0.7, 0.4, 0.15, 0.9


class SkipNet(nnx.Module):
    """snnTorch-style hand-rolled leaky neuron beside a plastic readout of
    the raw input: the readout's presynaptic activity is the input itself."""

    def __init__(self, n_in, n_out, rngs, dtype=jnp.float32):
        self.fc = nnx.Linear(n_in, 6, rngs=rngs, param_dtype=dtype)
        self.mem = bs.HiddenState(jnp.zeros((6,), dtype))
        self.readout = HPLinear(n_in, n_out, rngs=rngs, scale=0.0)
        self.head = nnx.Linear(6, n_out, rngs=rngs, param_dtype=dtype)

    def __call__(self, x):
        mem = 0.9 * self.mem[...] + self.fc(x)
        spk = jax.nn.sigmoid(4.0 * (mem - 1.0))
        self.mem[...] = mem - spk
        return self.readout(x) + self.head(spk)


def numpy_assoc(H, x, t, n_out, clip=np.inf):
    x, t = np.asarray(x, np.float64), np.asarray(t)
    unit = x / np.sqrt((x * x).sum(1, keepdims=True) + 1e-12)
    teach = (np.eye(n_out)[np.maximum(t, 0)] - ETA) * (t >= 0)[:, None]
    return np.clip(GAMMA * H + (BETA * unit).T @ teach / len(t), -clip, clip)


def test_h_equals_numpy_each_step_and_unlabelled_steps_only_decay():
    rs = np.random.default_rng(0)
    B, I, O = 4, 7, 3
    learner = bs.online(SkipNet(I, O, nnx.Rngs(0)), "es_d_rtrl", optimizer=optax.sgd(0.05),
                        rules={A: bs.rules.hp_assoc(alpha=ALPHA, beta=BETA, eta=ETA,
                                                    gamma=GAMMA, clip=0.1)})
    xs = jnp.asarray(rs.random((5, B, I)), jnp.float32)
    ys = jnp.asarray([[0, 2, 1, -1], [-1] * B, [1, 1, 0, 2], [2, -1, 0, 1], [0, 1, 2, 0]])
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    H = np.zeros((I, O))
    for x, y in zip(xs, ys):
        state, _, _ = learner.step(state, x, y)
        H = numpy_assoc(H, x, y, O, clip=0.1)
        np.testing.assert_allclose(state.local[A].H, H, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(state.params["readout"]["A"], ALPHA * H, rtol=1e-5,
                                   atol=1e-7)
    assert np.any(np.abs(H) == 0.1) and np.any(np.abs(H) < 0.1)        # the bound acts
    assert np.abs(np.asarray(state.params["readout"]["W"])).max() > 0   # W still trained


def test_one_presentation_recalls_by_cosine_to_the_prototypes():
    rs = np.random.default_rng(1)
    K, I = 4, 12
    protos = rs.random((K, I)) * (rs.random((K, I)) < 0.5)
    learner = bs.online(SkipNet(I, K, nnx.Rngs(1)), "es_d_rtrl", optimizer=optax.sgd(0.0),
                        rules={A: bs.rules.hp_assoc(alpha=1.0, beta=1.0, eta=0.0, gamma=1.0)})
    support = jnp.asarray(protos, jnp.float32)
    state = learner.init(jax.random.PRNGKey(0), support)
    state, _ = learner.train_sequence(state, support[None], jnp.arange(K)[None])
    unit = protos / np.linalg.norm(protos, axis=1, keepdims=True)
    np.testing.assert_allclose(state.local[A].H, unit.T / K, rtol=1e-5, atol=1e-7)
    # queries: noisy, rescaled copies; the plastic part alone (head zeroed) is
    # x . unit(c_k) / K: the cosine nearest prototype
    params = {**state.params, "head": jax.tree.map(jnp.zeros_like, state.params["head"])}
    queries = protos[rs.integers(0, K, 64)] * rs.uniform(0.3, 3.0, (64, 1)) \
        + 0.3 * rs.random((64, I))
    qs = jnp.asarray(queries[None], jnp.float32)                 # T 1, B 64
    learner64 = bs.online(SkipNet(I, K, nnx.Rngs(1)), "es_d_rtrl", optimizer=optax.sgd(0.0),
                          rules={A: bs.rules.hp_assoc()})
    s64 = learner64.init(jax.random.PRNGKey(0), qs[0])
    out = np.asarray(learner64.predict(s64._replace(params=params), qs)[0])
    expect = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    np.testing.assert_array_equal(out.argmax(1), expect.argmax(1))
    assert len(set(expect.argmax(1))) == K          # every class is recalled somewhere


def test_plasticity_without_labels_is_named():
    net = bs.plasticity(SkipNet(5, 3, nnx.Rngs(0)), {A: bs.rules.hp_assoc()})
    state = net.init(jax.random.PRNGKey(0), jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="hp_assoc needs the step's label"):
        net.step(state, jnp.ones((2, 5)))
    state, _, _ = net.step(state, jnp.ones((2, 5)), target=jnp.asarray([0, 2]))
    assert np.abs(np.asarray(state.rules[A].H)).max() > 0


def test_theta_gradient_equals_finite_differences_and_is_finite_on_silence():
    """The rule is what the bilevel step differentiates (the chain through
    the learner is checked in test_hybrid.py): its theta-gradient against
    central differences in float64, finite with a silent sample (x = 0)."""
    with jax.enable_x64():
        rs = np.random.default_rng(2)
        x = jnp.asarray(rs.random((4, 5)) * (rs.random((4, 5)) < 0.6)).at[1].set(0.0)
        t, H0 = jnp.asarray([0, 2, -1, 1]), jnp.asarray(rs.normal(size=(5, 3)) * 0.1)
        theta = HPTheta(jnp.asarray(ALPHA), jnp.asarray(rs.uniform(0.2, 1.0, 5)),
                        jnp.asarray(rs.uniform(0.0, 0.3, 3)), jnp.asarray(GAMMA))
        q = jnp.asarray(rs.random((6, 5)))

        def f(v):
            th = unflat(v)
            H = hp_assoc_update(hp_assoc_update(H0, x, t, th, 3, 50.0), x[::-1], t, th, 3, 50.0)
            return jnp.sum(jax.nn.log_softmax(th.alpha * q @ H) * jnp.eye(3)[jnp.arange(6) % 3])

        flat, unflat = jax.flatten_util.ravel_pytree(theta)
        grad = np.asarray(jax.grad(f)(flat))
        assert np.all(np.isfinite(grad))
        eps = 1e-6
        fd = np.array([(f(flat.at[i].add(eps)) - f(flat.at[i].add(-eps))) / (2 * eps)
                       for i in range(flat.size)])
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
        assert np.abs(fd).max() > 1e-3
        # x itself depends on theta through the inner weight updates
        gx = jax.grad(lambda xx: jnp.sum(hp_assoc_update(H0, xx, t, theta, 3, 50.0) ** 2))(x)
        assert np.all(np.isfinite(np.asarray(gx)))
