"""Large closed-over arrays (sparse index arrays) are arguments of the
compiled programs, not literals written into them: ``transforms.const_args``
on its own and in every learner call, with results bit for bit those of a
plain ``jax.jit``."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

import brainscale as bs
from gradcheck import spike
from transforms.const_args import MIN_BYTES, jit_const_args

N, FAN, I, C = 2000, 20, 6, 3            # 40,000 synapses: a 160 kB index array


def sparse_net(seed=0):
    """A recurrent LIF layer with fixed in-degree sparse synapses,
    ``segment_sum(W * s[pre], post)``, closing over its index arrays."""
    rng = np.random.default_rng(seed)
    pre = jnp.asarray(rng.integers(0, N, N * FAN, dtype=np.int32))
    post = jnp.asarray(np.repeat(np.arange(N, dtype=np.int32), FAN))

    def init(key, x):
        k1, k2, k3 = jax.random.split(key, 3)
        return ({"w_in": jax.random.normal(k1, (I, N)) * 2.0,
                 "w_rec": jax.random.normal(k2, (N * FAN,)) * 0.3,
                 "w_out": jax.random.normal(k3, (N, C)) * 0.1},
                {"v": jnp.zeros(N), "s": jnp.zeros(N)})

    def apply(p, h, x):
        rec = jax.ops.segment_sum(p["w_rec"] * h["s"][pre], post, num_segments=N)
        v = 0.9 * h["v"] + x @ p["w_in"] + rec
        s = spike(v - 1.0)
        return {"v": v - s, "s": s}, s @ p["w_out"]
    return bs.StepModel(init, apply), pre


def batch(T=3, B=2, seed=1):
    rs = np.random.default_rng(seed)
    xs = jnp.asarray((rs.random((T, B, I)) < 0.5).astype(np.float32))
    ys = jnp.asarray(rs.integers(0, C, (T, B)).astype(np.int32))
    return xs, ys


def test_a_closed_over_array_is_an_argument_not_a_literal():
    big = jnp.arange(50_000, dtype=jnp.int32)              # 200 kB
    small = jnp.arange(8, dtype=jnp.float32)
    f = lambda x: x[big % 7] * 2.0 + jnp.sum(small)
    g = jit_const_args(f)
    x = jnp.linspace(0.0, 1.0, 7)
    np.testing.assert_array_equal(g(x), jax.jit(f)(x))
    assert [c.shape for c in g.hoisted(x)] == [big.shape]  # the small one stays a literal
    assert len(g.lower(x).as_text()) < 20_000 < len(jax.jit(f).lower(x).as_text())
    g(x + 1.0)
    assert g._cache_size() == 1                            # same shapes: no new trace


def test_it_composes_with_vmap_grad_and_an_outer_jit():
    w = jnp.asarray(np.random.default_rng(0).normal(size=(40_000,)).astype(np.float32))
    f = lambda x: jnp.sum(jnp.sin(x * w[:100]))
    g = jit_const_args(f)
    xs = jnp.linspace(0.0, 1.0, 300).reshape(3, 100)
    np.testing.assert_array_equal(jax.vmap(g)(xs), jax.vmap(jax.jit(f))(xs))
    np.testing.assert_array_equal(jax.grad(g)(xs[0]), jax.grad(jax.jit(f))(xs[0]))
    np.testing.assert_array_equal(jax.jit(lambda x: g(x) + 1.0)(xs[1]), f(xs[1]) + 1.0)


def test_donated_arguments_are_consumed():
    big = jnp.ones(MIN_BYTES // 4, jnp.float32)
    g = jit_const_args(lambda s, x: (s + x * big[:4], s.sum()), donate_argnums=0)
    s = jnp.zeros(4)
    s2, _ = g(s, jnp.ones(4))
    assert s.is_deleted() and not s2.is_deleted()


def test_a_learner_on_a_sparse_model_compiles_no_large_constant():
    model, pre = sparse_net()
    xs, ys = batch()
    learner = bs.online(model, "es_d_rtrl", optimizer=optax.adam(1e-2))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    hlo = learner.step.lower(state, xs[0], ys[0]).as_text()
    inlined = jax.jit(learner._step).lower(state, xs[0], ys[0]).as_text()
    assert len(inlined) > len(hlo) + 2 * pre.nbytes      # the index array as a hex literal
    assert len(hlo) < pre.nbytes                         # here it is not
    assert any(c is pre for c in learner.step.hoisted(state, xs[0], ys[0]))
    bptt = bs.online(model, "bptt", optimizer=optax.adam(1e-2))
    sb = bptt.init(jax.random.PRNGKey(0), xs[0])
    assert len(bptt.train_sequence.lower(sb, xs, ys).as_text()) < pre.nbytes


def test_a_learner_step_is_bit_for_bit_that_of_a_plain_jit():
    """Hoisting changes where the index arrays live, not one bit of the
    result: a step (forward, traces, Adam) and a training sequence equal
    the same methods under ``jax.jit`` with the arrays written in."""
    model, _ = sparse_net()
    xs, ys = batch()
    for algorithm in ("es_d_rtrl", "d_rtrl", "bptt"):
        learner = bs.online(model, algorithm, optimizer=optax.adam(1e-2))
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        if algorithm != "bptt":
            a, _, ma = learner.step(state, xs[0], ys[0])
            b, _, mb = jax.jit(learner._step)(state, xs[0], ys[0])
            for u, v in zip(jax.tree.leaves((a, ma)), jax.tree.leaves((b, mb))):
                np.testing.assert_array_equal(u, v)
        a, ma = learner.train_sequence(state, xs, ys)
        b, mb = jax.jit(learner._train_sequence)(state, xs, ys)
        for u, v in zip(jax.tree.leaves((a, ma)), jax.tree.leaves((b, mb))):
            np.testing.assert_array_equal(u, v)


def test_lowered_and_compiled_are_called_like_the_function():
    """The jax idiom ``f.lower(*args).compile()(*args)`` works on a learner's
    method (its program takes the hoisted arrays as extra arguments), and
    gives the method's result."""
    model, _ = sparse_net()
    xs, ys = batch()
    learner = bs.online(model, "es_d_rtrl", optimizer=optax.adam(1e-2))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    compiled = learner.train_sequence.lower(state, xs, ys).compile()
    assert compiled.memory_analysis().temp_size_in_bytes > 0
    got, want = compiled(state, xs, ys), learner.train_sequence(state, xs, ys)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), got, want))
