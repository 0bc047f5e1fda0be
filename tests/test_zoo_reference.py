"""The zoo of foreign-style step functions (benchmarks/zoo) and its
independent gradient reference, checked without BrainScale's compiler:

(a) every entry's init / apply runs under jit and vmap and gives back a
    hidden state of the same structure, shapes and dtypes (and follows
    float64 inputs);
(b) the reference gradient equals a central finite difference. A Heaviside
    forward has zero derivative almost everywhere, so no finite difference
    can see a surrogate gradient: the four entries here (whose steps have no
    stop_gradient and no where on the spike) are rebuilt with a smooth spike
    function, for which the reference gradient is the true derivative;
(c) the reference's scan equals an unrolled Python loop.
"""
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from zoo import BY_NAME, ZOO, brainpy_style, norse_style, paper_style, spyx_style  # noqa: E402
from zoo.reference import (bptt_grads, cross_entropy, make_data,  # noqa: E402
                           sequence_loss)
from gradcheck import float64  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _cheap_prng():
    """Random parameters and data drawn with the "rbg" PRNG: its kernels compile
    in a fraction of threefry's time (these tests check structure and
    derivatives, not particular values)."""
    old = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "rbg")
    try:
        yield
    finally:
        jax.config.update("jax_default_prng_impl", old)


def _sig(a):
    return jax.tree.structure(a), [(jnp.shape(l), jnp.result_type(l)) for l in jax.tree.leaves(a)]


def test_zoo_size_and_styles():
    assert len(ZOO) >= 26
    assert {e.style for e in ZOO} == {"snntorch", "norse", "spyx", "brainpy", "paper"}
    assert any(e.has_while for e in ZOO) and any(not e.feedforward for e in ZOO)
    src = (Path(brainpy_style.__file__)).read_text()
    assert "import brainpy" not in src and "from brainpy" not in src


@pytest.mark.parametrize("entry", ZOO, ids=lambda e: e.name)
def test_entry_runs_jit_vmap(entry):
    B = 2
    xb = jax.random.uniform(jax.random.PRNGKey(1), (B,) + entry.shape)
    params, h0 = entry.init(jax.random.PRNGKey(0), xb[0])
    assert all(jnp.issubdtype(jnp.result_type(l), jnp.floating) for l in jax.tree.leaves(params))
    hb = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,) + jnp.shape(a)), h0)
    step = jax.jit(jax.vmap(entry.apply, in_axes=(None, 0, 0)))
    h1, out = step(params, hb, xb)
    h2, out = step(params, h1, xb)
    assert _sig(h1) == _sig(hb) == _sig(h2)
    assert out.shape == (B, entry.n_out) and jnp.issubdtype(out.dtype, jnp.floating)
    assert np.all(np.isfinite(np.asarray(out)))
    # one sample, no batch axis, same structure as init's hidden
    h_one, o_one = jax.eval_shape(entry.apply, params, h0, xb[0])
    assert _sig(h_one) == _sig(h0) and o_one.shape == (entry.n_out,)

    with float64():    # dtypes follow the input
        x64 = jnp.zeros(entry.shape, jnp.float64)
        p64, h64 = jax.eval_shape(entry.init, jax.random.PRNGKey(0), x64)
        h64b, out64 = jax.eval_shape(entry.apply, p64, h64, x64)
        assert _sig(h64b) == _sig(h64)
        assert out64.dtype == jnp.float64
        for a, b in zip(jax.tree.leaves(h0), jax.tree.leaves(h64)):
            if jnp.issubdtype(jnp.result_type(a), jnp.floating):
                assert b.dtype == jnp.float64
            elif jnp.issubdtype(jnp.result_type(a), jnp.complexfloating):
                assert b.dtype == jnp.complex128
            else:
                assert b.dtype == jnp.result_type(a)
        assert all(l.dtype == jnp.float64 for l in jax.tree.leaves(p64))


def smooth(x):
    """A smooth stand-in for the spike, so the loss is differentiable."""
    return jax.nn.sigmoid(4.0 * x)


SMOOTH_ENTRIES = {
    "norse.LIF": lambda: norse_style.lif(threshold=smooth),
    "spyx.ALIF": lambda: spyx_style.alif(activation=smooth),
    "brainpy.AlignPost": lambda: brainpy_style.align_post(spk_fun=smooth),
    "paper.RF.split": lambda: paper_style.resonator_split(spike=smooth),
}


@pytest.mark.parametrize("name", sorted(SMOOTH_ENTRIES))
def test_reference_matches_finite_difference(name):
    with float64():
        entry = SMOOTH_ENTRIES[name]()
        assert entry.name == name
        xs, ys = make_data(entry, T=5, B=2, seed=3)
        params, h0 = entry.init(jax.random.PRNGKey(0), xs[0][0])
        flat_p, unravel = ravel_pytree(params)
        eps = 1e-6
        shifts = eps * jnp.concatenate([jnp.eye(flat_p.size), -jnp.eye(flat_p.size)])

        @jax.jit
        def grad_and_shifted_losses(fp):
            loss = lambda q: sequence_loss(entry, unravel(q), h0, xs, ys)  # noqa: E731
            g = ravel_pytree(bptt_grads(entry, unravel(fp), h0, xs, ys))[0]
            return g, jax.vmap(loss)(fp + shifts)

        g, vals = map(np.asarray, grad_and_shifted_losses(flat_p))
        fd = (vals[:flat_p.size] - vals[flat_p.size:]) / (2 * eps)
        big = np.flatnonzero(np.abs(g) > 1e-2 * np.max(np.abs(g)))
        for i in np.random.RandomState(0).choice(big, 3, replace=False):
            assert abs(fd[i] - g[i]) <= 1e-6 * abs(g[i]), (i, fd[i], g[i])


def unrolled_grads(entry, params, hidden0, xs, ys):
    """The reference written as a Python loop over time (no scan)."""
    def total(p):
        B = xs.shape[1]
        h = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,) + jnp.shape(a)), hidden0)
        losses = []
        for t in range(xs.shape[0]):
            h, out = jax.vmap(entry.apply, in_axes=(None, 0, 0))(p, h, xs[t])
            losses.append(jnp.mean(jax.vmap(cross_entropy)(out, ys[t])))
        return sum(losses) / len(losses)
    return jax.grad(total)(params)


@pytest.mark.parametrize("name", ["snntorch.Synaptic", "norse.LIF+LI"])
def test_reference_scan_equals_unrolled(name):
    with float64():
        entry = BY_NAME[name]
        xs, ys = make_data(entry, T=6, B=2)
        params, h0 = entry.init(jax.random.PRNGKey(0), xs[0][0])
        g = ravel_pytree(jax.jit(bptt_grads, static_argnums=0)(entry, params, h0, xs, ys))[0]
        u = ravel_pytree(jax.jit(unrolled_grads, static_argnums=0)(entry, params, h0, xs, ys))[0]
        assert np.linalg.norm(g) > 0
        assert np.linalg.norm(g - u) <= 1e-12 * np.linalg.norm(u)
