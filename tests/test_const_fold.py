"""Closed-over index arrays are read as they are: the traced step drops
constant-only equations that reproduce an operand (jax.numpy's
negative-index normalisation of ``s[pre]``), and the graph keeps no copy of
an index array or of its reshapes."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

import brainscale as bs
from test_const_args import batch, sparse_net
from transforms.ir.trace import trace_step


def gather_step(idx):
    def apply(p, h, x):
        v = 0.5 * h["v"] + p["w"] * x[idx]
        return {"v": v}, v
    p, h, x = {"w": jnp.ones(idx.shape[0])}, {"v": jnp.zeros(idx.shape[0])}, jnp.arange(6.0)
    return apply, p, h, x


def prims(traced):
    return [e.primitive.name for e in traced.eqns]


def test_the_index_normalisation_of_a_non_negative_index_array_is_dropped():
    idx = jnp.asarray(np.random.default_rng(0).integers(0, 6, 5000, dtype=np.int32))
    apply, p, h, x = gather_step(idx)
    t = trace_step(apply, p, h, x)
    assert "select_n" not in prims(t) and "lt" not in prims(t), prims(t)
    assert any(c is idx for c in t.consts)               # read as it is, not copied
    assert not any(c is not idx and getattr(c, "size", 0) >= idx.size for c in t.consts)
    learner = bs.online(bs.StepModel(lambda k, xx: (p, h), apply), "es_d_rtrl",
                        loss=lambda out, y: jnp.sum(out * y))
    state = learner.init(jax.random.PRNGKey(0), x[None])
    _, out, _ = learner.step(state, x[None], jnp.ones((1, 5000)))
    np.testing.assert_array_equal(out[0], apply(p, h, x)[0]["v"])


def test_negative_indices_keep_their_normalisation():
    idx = jnp.asarray(np.array([0, -1, 3, -6, 5], np.int32))
    apply, p, h, x = gather_step(idx)
    t = trace_step(apply, p, h, x)
    assert "select_n" in prims(t)
    learner = bs.online(bs.StepModel(lambda k, xx: (p, h), apply), "es_d_rtrl",
                        loss=lambda out, y: jnp.sum(out * y))
    state = learner.init(jax.random.PRNGKey(0), x[None])
    _, out, _ = learner.step(state, x[None], jnp.ones((1, 5)))
    np.testing.assert_array_equal(out[0], [0.0, 5.0, 3.0, 0.0, 5.0])


def test_the_graph_holds_no_copy_of_the_index_arrays():
    model, pre = sparse_net()
    xs, ys = batch()
    learner = bs.online(model, "es_d_rtrl", optimizer=optax.adam(1e-2))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    learner.step(state, xs[0], ys[0])
    assert learner.graph.const_env.held_bytes() < pre.nbytes // 4
    big = [c for c in learner.graph.traced.consts if c.nbytes >= pre.nbytes]
    assert len(big) == 2 and any(c is pre for c in big)      # pre and post, nothing else
