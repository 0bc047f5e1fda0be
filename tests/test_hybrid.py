"""Hybrid plasticity: the local update against numpy, H carried across
steps and sequences and reset per episode, and the bilevel meta-gradient
against finite differences."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import brainscale as bs
from brainscale import hybrid
from brainscale.nn.hp_synapse import HPLinear
from brainscale.nn.neurons import LIF
from transforms.plasticity.rules.hybrid import hp_local

A = "params['fc1']['A']"
ALPHA, BETA, ETA, GAMMA, VTH, CLIP = 0.7, 0.3, 0.1, 0.8, 0.5, 0.05


class Net(nnx.Module):
    def __init__(self, rngs, smooth=False, dtype=jnp.float32):
        kw = {"spike_fn": lambda z: jax.nn.sigmoid(3.0 * z)} if smooth else {}
        self.fc1 = HPLinear(5, 4, rngs=rngs, scale=2.0)
        self.lif1 = LIF(4, tau=5.0, v_th=VTH, **kw)
        self.out = nnx.Linear(4, 3, rngs=rngs, param_dtype=dtype)

    def __call__(self, x):
        return self.out(self.lif1(self.fc1(x)))


def rule():
    return hp_local(alpha=ALPHA, beta=BETA, eta=ETA, gamma=GAMMA, v_th=VTH, clip=CLIP)


def spikes(rs, *shape):
    return jnp.asarray((rs.random(shape) < 0.5).astype(np.float32))


def test_local_update_equals_numpy_and_h_is_carried():
    rs = np.random.default_rng(0)
    net = bs.plasticity(Net(nnx.Rngs(0)), {A: rule()})
    x1, x2 = spikes(rs, 3, 5), spikes(rs, 3, 5)
    state = net.init(jax.random.PRNGKey(0), x1)
    H = np.zeros((5, 4))
    for x in (x1, x2):
        state, _, dws = net.step(state, x)
        u = np.asarray(state.hidden["lif1"]["v"])      # the potential after the step
        drive = sum(np.outer(BETA * np.asarray(x)[b], np.tanh(u[b] / VTH - ETA))
                    for b in range(3)) / 3
        H_new = np.clip(GAMMA * H + drive, -CLIP, CLIP)
        np.testing.assert_allclose(state.rules[A].H, H_new, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(state.params["fc1"]["A"], ALPHA * H_new, rtol=1e-5,
                                   atol=1e-7)
        np.testing.assert_allclose(dws[A], ALPHA * (H_new - H), rtol=1e-5, atol=1e-7)
        H = H_new
    assert np.any(np.abs(H) == CLIP) and np.any(np.abs(H) < CLIP)   # the bound acts


def test_h_persists_across_sequences_and_resets_per_episode():
    rs = np.random.default_rng(1)
    learner = bs.online(Net(nnx.Rngs(0)), "es_d_rtrl", optimizer=optax.sgd(0.1),
                        rules={A: rule()})
    xs, ys = spikes(rs, 6, 3, 5), jnp.asarray(rs.integers(0, 3, (6, 3)))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    s1, _ = learner.train_sequence(state, xs, ys)
    s2, _ = learner.train_sequence(s1, xs, ys)
    h1, h2 = np.asarray(s1.local[A].H), np.asarray(s2.local[A].H)
    assert np.abs(h1).max() > 0 and not np.allclose(h1, h2)     # carried, not reset
    np.testing.assert_allclose(s2.params["fc1"]["A"], ALPHA * h2, rtol=1e-6)
    fresh = hybrid.new_episode(s2)
    assert np.all(np.asarray(fresh.local[A].H) == 0)
    assert np.all(np.asarray(fresh.params["fc1"]["A"]) == 0)
    np.testing.assert_array_equal(fresh.params["fc1"]["W"], s2.params["fc1"]["W"])
    assert float(fresh.local[A].theta.alpha) == np.float32(ALPHA)


def test_missing_potential_is_named():
    class Rate(nnx.Module):
        def __init__(self, rngs):
            self.fc1 = HPLinear(5, 4, rngs=rngs)
            self.lif1 = LIF(4)

        def __call__(self, x):
            return self.lif1(self.fc1(x))

    net = bs.plasticity(Rate(nnx.Rngs(0)), {A: hp_local(potential="u")})
    state = net.init(jax.random.PRNGKey(0), jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"hidden\['lif1'\]\['v'\].*named 'u'"):
        net.step(state, jnp.ones((2, 5)))


@pytest.mark.parametrize("algorithm", ["d_rtrl", "es_d_rtrl"])
def test_bilevel_meta_gradient_equals_finite_differences(algorithm):
    with jax.enable_x64():
        rs = np.random.default_rng(0)
        model = Net(nnx.Rngs(0), smooth=True, dtype=jnp.float64)   # smooth: FD is defined
        learner = bs.online(model, algorithm, optimizer=optax.sgd(0.5),
                            rules={A: hp_local(alpha=ALPHA, beta=BETA, eta=ETA, gamma=GAMMA,
                                               v_th=VTH)})
        data = [(jnp.asarray((rs.random((6, 3, 5)) < 0.5).astype(np.float64)),
                 jnp.asarray(rs.integers(0, 3, (6, 3)))) for _ in range(3)]
        train, val = data[:2], data[2]
        state = learner.init(jax.random.PRNGKey(0), train[0][0][0])
        grads = {}
        for first_order in (False, True):
            bl = hybrid.Bilevel(learner, optax.sgd(0.1), first_order=first_order)
            meta = bl.init(state)
            flat, unflat = jax.flatten_util.ravel_pytree(meta.theta)

            def f(v):
                return bl.meta_loss(unflat(v), state, train, val)[0]

            grads[first_order] = np.asarray(jax.grad(f)(flat))
        eps = 1e-6
        fd = np.array([(f(flat.at[i].add(eps)) - f(flat.at[i].add(-eps))) / (2 * eps)
                       for i in range(flat.size)])
        scale = np.abs(fd).max()
        assert np.abs(grads[False] - fd).max() <= 1e-6 * scale
        # first order drops the terms through the inner weight update: a
        # different, non-zero gradient
        assert np.abs(grads[True] - fd).max() > 1e-2 * scale
        assert np.abs(grads[True]).max() > 0.1 * scale


def test_bilevel_step_updates_theta_and_trains_w():
    rs = np.random.default_rng(2)
    learner = bs.online(Net(nnx.Rngs(0)), "es_d_rtrl", optimizer=optax.sgd(0.5),
                        rules={A: rule()})
    data = [(spikes(rs, 6, 3, 5), jnp.asarray(rs.integers(0, 3, (6, 3)))) for _ in range(2)]
    state = learner.init(jax.random.PRNGKey(0), data[0][0][0])
    bl = hybrid.Bilevel(learner, optax.adam(1e-2))
    meta = bl.init(state)
    s, meta2, m = bl.step(state, meta, data[:1], data[1])
    assert np.isfinite(float(m["val_loss"])) and float(m["meta_grad_norm"]) > 0
    assert not np.allclose(meta2.theta[A].beta, meta.theta[A].beta)
    assert s.local[A].theta is meta2.theta[A]
    assert not np.allclose(s.params["fc1"]["W"], state.params["fc1"]["W"])
