"""Weight ops, projections, the recurrent layer and readouts against numpy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from brainscale.nn.neurons import LIF
from brainscale.nn.projections import AlignPost, AlignPre, Linear, Recurrent, SparseLinear
from brainscale.nn.readout import LeakyReadout, LinearReadout
from brainscale.nn.state import HiddenState
from brainscale.nn.synapses import STD, Expon
from nnx_run import check_batched, run


def _run(model, xs):
    return run(model, xs)[0]


def _check_batched(make, xs):
    check_batched(make, xs)


def _call(model, x):
    """One jitted call of ``model`` on ``x`` (hidden state of ``model`` untouched)."""
    return _run(model, np.asarray(x, np.float32)[None])[0]


def _prims(model, x):
    """Primitive names in the jaxpr of one call of ``model``."""
    graphdef, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda st, x: nnx.merge(graphdef, st)(x))(state, x)
    return [e.primitive.name for e in jaxpr.jaxpr.eqns]


# ---------------------------------------------------------------- Linear

def test_linear_matches_numpy_and_dale():
    lin = Linear(8, 5, rngs=nnx.Rngs(0), use_bias=True)
    W = np.asarray(lin.W[...])
    assert W.shape == (8, 5)
    b = np.linspace(-0.2, 0.3, 5).astype(np.float32)
    lin.b[...] = jnp.asarray(b)
    x = np.random.default_rng(0).normal(size=8).astype(np.float32)
    np.testing.assert_allclose(_call(lin, x), x @ W + b, rtol=1e-5, atol=1e-6)
    lin2 = Linear(8, 5, rngs=nnx.Rngs(0), scale=2.0)
    np.testing.assert_allclose(lin2.W[...], 2 * W, rtol=1e-6)
    sign = np.array([1, -1] * 4)
    d = Linear(8, 5, rngs=nnx.Rngs(0), dale=sign)
    eff = np.asarray(d.weight())
    assert np.all(eff[sign > 0] >= 0) and np.all(eff[sign < 0] <= 0)
    np.testing.assert_allclose(_call(d, x), x @ (np.abs(W) * sign[:, None]),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- SparseLinear

def _np_dense(pre, post, w, n_in, n_out):
    M = np.zeros((n_in, n_out))
    for i, j, v in zip(pre, post, w):
        M[i, j] += v
    return M


@pytest.mark.parametrize("kw", [dict(prob=0.2), dict(fan_in=7)], ids=["prob", "fan_in"])
def test_sparse_linear_equals_dense(kw):
    n_in, n_out = 30, 20
    sp = SparseLinear(n_in, n_out, rngs=nnx.Rngs(0), seed=3, **kw)
    pre, post, w = (np.asarray(sp.pre_idx[...]), np.asarray(sp.post_idx[...]), np.asarray(sp.W[...]))
    assert w.shape == (sp.n_syn,) and pre.shape == post.shape == w.shape
    assert isinstance(sp.W, nnx.Param)
    assert type(sp.pre_idx) is nnx.Variable and type(sp.post_idx) is nnx.Variable
    # no duplicate synapses
    assert len(set(zip(pre.tolist(), post.tolist()))) == sp.n_syn
    M = _np_dense(pre, post, w, n_in, n_out)
    np.testing.assert_allclose(sp.to_dense(), M, rtol=1e-6)
    x = np.random.default_rng(1).normal(size=n_in).astype(np.float32)
    np.testing.assert_allclose(_call(sp, x), x @ M, rtol=1e-5, atol=1e-5)
    if "fan_in" in kw:
        np.testing.assert_array_equal(np.bincount(post, minlength=n_out), 7)
    else:
        assert 0.1 < sp.n_syn / (n_in * n_out) < 0.3
    prims = _prims(sp, jnp.asarray(x))
    assert "gather" in prims and "scatter-add" in prims and "dot_general" not in prims


def test_sparse_linear_seed_and_arguments():
    a = SparseLinear(10, 8, rngs=nnx.Rngs(0), fan_in=3, seed=5)
    b = SparseLinear(10, 8, rngs=nnx.Rngs(1), fan_in=3, seed=5)
    c = SparseLinear(10, 8, rngs=nnx.Rngs(0), fan_in=3, seed=6)
    np.testing.assert_array_equal(a.pre_idx[...], b.pre_idx[...])
    assert not np.array_equal(a.pre_idx[...], c.pre_idx[...])
    with pytest.raises(ValueError):
        SparseLinear(10, 8, rngs=nnx.Rngs(0), fan_in=3, prob=0.1)
    with pytest.raises(ValueError):
        SparseLinear(10, 8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError):
        SparseLinear(10, 8, rngs=nnx.Rngs(0), fan_in=11)


def test_sparse_linear_dale_signs():
    n_in, n_out = 40, 30
    sign = np.where(np.arange(n_in) < 30, 1.0, -1.0)
    sp = SparseLinear(n_in, n_out, rngs=nnx.Rngs(2), prob=0.3, seed=1, dale=sign)
    D = np.asarray(sp.to_dense())
    assert np.all(D[sign > 0] >= 0) and np.all(D[sign < 0] <= 0)
    assert (D[sign > 0] > 0).any() and (D[sign < 0] < 0).any()
    exc = np.zeros(n_in, np.float32)
    exc[:30] = 1.0
    assert np.all(np.asarray(_call(sp, exc)) >= 0)
    assert np.all(np.asarray(_call(sp, 1.0 - exc)) <= 0)
    # flipping a raw weight's sign does not change the effective weight
    sp.W[...] = -sp.W[...]
    np.testing.assert_allclose(sp.to_dense(), D)
    with pytest.raises(ValueError):
        SparseLinear(n_in, n_out, rngs=nnx.Rngs(2), prob=0.3, dale=np.ones(3))


# ---------------------------------------------------------------- AlignPost / AlignPre

def test_align_post_cuba_and_coba_match_numpy():
    n_pre, n_post, T, tau_s, E = 8, 4, 80, 5.0, 3.0
    spikes = (np.random.default_rng(3).random((T, n_pre)) < 0.3).astype(np.float32)
    for out in ["cuba", "coba"]:
        comm = Linear(n_pre, n_post, rngs=nnx.Rngs(0), scale=0.5)
        W = np.abs(np.asarray(comm.W[...]))
        comm.W[...] = jnp.asarray(W)
        proj = AlignPost(comm, Expon(n_post, tau=tau_s), LIF(n_post, tau=10.0, R=8.0),
                         out=out, E=E if out == "coba" else None)
        y = _run(proj, spikes)
        g, v = np.zeros(n_post), np.zeros(n_post)
        d = np.exp(-1 / 10.0)
        for t in range(T):
            g = g * np.exp(-1 / tau_s) + spikes[t] @ W
            I = g if out == "cuba" else g * (E - v)
            v = v * d + 8.0 * I * (1 - d)
            s = (v > 1.0).astype(float)
            v = v - s
            np.testing.assert_array_equal(y[t], s, err_msg=f"{out} t={t}")
        assert y.sum() > 3
    with pytest.raises(ValueError):
        AlignPost(comm, None, LIF(n_post), out="coba")


def test_align_pre_std_matches_numpy():
    n_pre, n_post, T = 10, 3, 100
    spikes = (np.random.default_rng(4).random((T, n_pre)) < 0.3).astype(np.float32)
    comm = SparseLinear(n_pre, n_post, rngs=nnx.Rngs(0), fan_in=6, seed=0,
                        dale=np.ones(n_pre))
    M = np.asarray(comm.to_dense())
    proj = AlignPre(STD(n_pre, tau_d=30.0, U=0.5), comm, LIF(n_post, R=40.0))
    y = _run(proj, spikes)
    x, v = np.ones(n_pre), np.zeros(n_post)
    d = np.exp(-1 / 20.0)
    for t in range(T):
        rel = 0.5 * x * spikes[t]
        x = x + (1 - x) / 30.0 - rel
        v = v * d + 40.0 * (rel @ M) * (1 - d)
        s = (v > 1.0).astype(float)
        v = v - s
        np.testing.assert_array_equal(y[t], s, err_msg=f"t={t}")
    assert y.sum() > 3


# ---------------------------------------------------------------- Recurrent

@pytest.mark.parametrize("with_syn", [False, True], ids=["delta", "expon"])
def test_recurrent_matches_numpy(with_syn):
    n_in, n_rec, T = 5, 7, 60
    layer = Recurrent(n_in, n_rec, LIF(n_rec, tau=10.0, R=5.0), rngs=nnx.Rngs(0),
                      syn=Expon(n_rec, tau=4.0) if with_syn else None,
                      w_in_scale=2.0, w_rec_scale=0.5)
    W = np.asarray(layer.linear.W[...])
    assert W.shape == (n_in + n_rec, n_rec)
    x = np.random.default_rng(5).random((T, n_in)).astype(np.float32)
    y = _run(layer, x)
    spk, v, g = np.zeros(n_rec), np.zeros(n_rec), np.zeros(n_rec)
    d = np.exp(-1 / 10.0)
    for t in range(T):
        I = x[t] @ W[:n_in] + spk @ W[n_in:]
        if with_syn:
            g = g * np.exp(-1 / 4.0) + I
            I = g
        v = v * d + 5.0 * I * (1 - d)
        spk = (v > 1.0).astype(float)
        v = v - spk
        np.testing.assert_array_equal(y[t], spk, err_msg=f"t={t}")
    assert y.sum() > 5 and (y[1:] != y[:-1]).any()
    prims = _prims(layer, jnp.asarray(x[0]))
    assert prims.count("dot_general") == 1 and "concatenate" in prims


def test_recurrent_weight_scales():
    layer = Recurrent(100, 80, LIF(80), rngs=nnx.Rngs(0), w_in_scale=2.0, w_rec_scale=0.5)
    W = np.asarray(layer.linear.W[...])
    assert np.std(W[:100]) == pytest.approx(2.0 / np.sqrt(100), rel=0.05)
    assert np.std(W[100:]) == pytest.approx(0.5 / np.sqrt(80), rel=0.05)
    with pytest.raises(ValueError):
        Recurrent(4, 5, LIF(6), rngs=nnx.Rngs(0))


# ---------------------------------------------------------------- Readouts

def test_readouts_match_numpy():
    n_in, n_out, T, tau = 6, 3, 30, 5.0
    ro = LeakyReadout(n_in, n_out, tau=tau, dt=0.5, rngs=nnx.Rngs(0))
    W = np.asarray(ro.W[...])
    x = np.random.default_rng(6).random((T, n_in)).astype(np.float32)
    y = _run(ro, x)
    r = np.zeros(n_out)
    for t in range(T):
        r = r * np.exp(-0.5 / tau) + x[t] @ W
        np.testing.assert_allclose(y[t], r, rtol=1e-5, atol=1e-5)
    lr = LinearReadout(n_in, n_out, rngs=nnx.Rngs(1))
    lr.b[...] = jnp.ones(n_out)
    np.testing.assert_allclose(_call(lr, x[0]), x[0] @ np.asarray(lr.W[...]) + 1, rtol=1e-5)
    assert len(jax.tree.leaves(nnx.state(lr, HiddenState))) == 0


# ---------------------------------------------------------------- jit / vmap

@pytest.mark.parametrize("name", ["sparse", "post", "pre", "recurrent", "leaky", "linear"])
def test_jit_and_vmap(name):
    make = {
        "sparse": lambda: SparseLinear(8, 5, rngs=nnx.Rngs(0), prob=0.5, seed=0),
        "post": lambda: AlignPost(Linear(8, 5, rngs=nnx.Rngs(0)), Expon(5), LIF(5, R=10.0),
                                  out="coba", E=2.0),
        "pre": lambda: AlignPre(STD(8), SparseLinear(8, 5, rngs=nnx.Rngs(0), fan_in=3, seed=0),
                                LIF(5, R=20.0)),
        "recurrent": lambda: Recurrent(8, 5, LIF(5, R=10.0), rngs=nnx.Rngs(0), syn=Expon(5)),
        "leaky": lambda: LeakyReadout(8, 5, rngs=nnx.Rngs(0)),
        "linear": lambda: LinearReadout(8, 5, rngs=nnx.Rngs(0)),
    }[name]
    xs = (np.random.default_rng(7).random((20, 3, 8)) < 0.4).astype(np.float32)
    _check_batched(make, xs)


class _SparseRecurrent(nnx.Module):
    """Dense input, sparse Dale recurrence on the previous spikes, leaky readout."""

    def __init__(self, compute):
        from brainscale.nn.neurons import ALIF

        rngs = nnx.Rngs(0)
        sign = np.where(np.arange(12) < 9, 1.0, -1.0)
        self.inp = Linear(6, 12, rngs=rngs, scale=8.0)
        self.rec = SparseLinear(12, 12, rngs=rngs, prob=0.3, seed=2, dale=sign,
                                w_init_std=4.0, compute=compute)
        self.neuron = ALIF(12, tau=5.0, tau_a=50.0, beta=0.2)
        self.out = LeakyReadout(12, 3, rngs=rngs)
        self.spk = HiddenState(jnp.zeros((12,)))

    def __call__(self, x):
        z = self.neuron(self.inp(x) + self.rec(self.spk[...]))
        self.spk[...] = z
        return self.out(z)


def test_sparse_linear_dense_compute_gives_the_same_gradients():
    """compute='dense' is a dense op whose weight is a function of the
    per-synapse values: every algorithm's gradient equals the segment-sum
    version's, and the compiler sees a dense op."""
    from gradcheck import float64, rel_err, sequence_grads

    import brainscale as bs

    with float64():
        k1, k2 = jax.random.split(jax.random.PRNGKey(3))
        xs = jax.random.bernoulli(k1, 0.4, (15, 4, 6)).astype(jnp.float64)
        ys = jax.random.randint(k2, (15, 4), 0, 3)
        g_seg, _ = sequence_grads(_SparseRecurrent("segment"), xs, ys)
        g_den, _ = sequence_grads(_SparseRecurrent("dense"), xs, ys)
        for alg in ("bptt", "d_rtrl", "es_d_rtrl"):
            assert np.linalg.norm(np.asarray(g_seg[alg]["rec"]["W"])) > 0
            assert rel_err(g_den[alg], g_seg[alg]) < 1e-10, alg
        learner = bs.online(_SparseRecurrent("dense"), "es_d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        kinds = {op.path: op.kind for op in learner.graph.ops}
        assert kinds["params['rec']['W']"] == "dense"
    with pytest.raises(ValueError, match="compute must be"):
        SparseLinear(4, 4, rngs=nnx.Rngs(0), prob=0.5, compute="csr")
