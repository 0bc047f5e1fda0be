"""``bs.online(..., donate=True)``: step, train_sequence and reset consume
the state they are given (its buffers hold the new state), with results
bit for bit those without donation; reading a consumed state is a clear
error; without donation (the default) every state stays usable."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import brainscale as bs
from brainscale.donation import DonatedStateError
from test_const_args import batch, sparse_net


def learners(**kw):
    model, _ = sparse_net()
    return [bs.online(model, "es_d_rtrl", optimizer=optax.adam(1e-2), donate=d, **kw)
            for d in (False, True)]


def same(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)


def test_a_donated_step_consumes_the_state_and_computes_the_same():
    xs, ys = batch()
    keep, give = learners()
    s_keep = keep.init(jax.random.PRNGKey(0), xs[0])
    s_give = give.init(jax.random.PRNGKey(0), xs[0])
    for t in range(len(xs)):
        old = s_give
        s_keep, out_k, m_k = keep.step(s_keep, xs[t], ys[t])
        s_give, out_g, m_g = give.step(s_give, xs[t], ys[t])
        same((s_keep, out_k, m_k), (s_give, out_g, m_g))
        assert all(a.is_deleted() for a in jax.tree.leaves(old.params))
    with pytest.raises(DonatedStateError, match="donated to an earlier call"):
        give.step(old, xs[0], ys[0])
    with pytest.raises(DonatedStateError, match="step: .*pass the state that call returned"):
        give.step(old, xs[0], ys[0])


def test_train_sequence_and_reset_consume_sequence_grad_and_predict_do_not():
    xs, ys = batch()
    keep, give = learners()
    s_keep = keep.init(jax.random.PRNGKey(0), xs[0])
    s_give = give.init(jax.random.PRNGKey(0), xs[0])
    same(keep.sequence_grad(s_keep, xs, ys), give.sequence_grad(s_give, xs, ys))
    same(keep.predict(s_keep, xs), give.predict(s_give, xs))
    s_keep, m_k = keep.train_sequence(s_keep, xs, ys)
    old = s_give
    s_give, m_g = give.train_sequence(s_give, xs, ys)
    same((s_keep, m_k), (s_give, m_g))
    with pytest.raises(DonatedStateError):
        give.predict(old, xs)
    old = s_give
    same(keep.reset(s_keep), give.reset(s_give))
    with pytest.raises(DonatedStateError, match="reset: "):
        give.reset(old)


def test_without_donation_every_state_stays_usable():
    xs, ys = batch()
    keep, _ = learners()
    s0 = keep.init(jax.random.PRNGKey(0), xs[0])
    s1, _, _ = keep.step(s0, xs[0], ys[0])
    s1b, _, _ = keep.step(s0, xs[0], ys[0])            # the same state, twice
    same(s1, s1b)
    assert not any(a.is_deleted() for a in jax.tree.leaves(s0))


def test_one_array_in_two_places_of_the_state_is_donated_once():
    """A model whose init returns one zeros array for two hidden leaves (and
    the learner's hidden0 beside hidden): no buffer is donated twice."""
    def init(key, x):
        z = jnp.zeros(4)
        return {"w": jnp.ones((3, 4))}, {"v": z, "u": z}

    def apply(p, h, x):
        v = 0.9 * h["v"] + x @ p["w"]
        return {"v": v, "u": 0.5 * h["u"] + v}, v

    x, y = jnp.ones((2, 3)), jnp.ones((2, 4))
    results = []
    for donate in (False, True):
        learner = bs.online(bs.StepModel(init, apply), "es_d_rtrl", donate=donate,
                            loss=lambda out, y: jnp.sum(out * y))
        state = learner.init(jax.random.PRNGKey(0), x)
        assert state.hidden0["v"] is state.hidden0["u"]
        for _ in range(2):
            state, out, _ = learner.step(state, x, y)
        results.append((state, out))
    same(*results)
