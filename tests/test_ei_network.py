"""The E-I ALIF network: 4:1 split, ~20% sparse recurrence, Dale's law kept
through large optimizer steps, its equations checked against a numpy loop,
and ES-D-RTRL's readout gradient equal to BPTT's (float64)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import brainscale as bs
from brainscale.models.ei_network import EINetwork, ei_network, record_spikes
from brainscale.nn.neurons import ALIF
from brainscale.nn.projections import Linear, SparseLinear
from brainscale.nn.readout import LeakyReadout
from gradcheck import float64, rel_err

TINY = dict(n_rec=20, w_in_scale=40.0, w_rec_scale=8.0, beta=0.2, tau_a=50.0, tau_out=5.0)


@pytest.fixture(scope="module", autouse=True)
def x64():
    with float64():
        yield


def data(T=20, B=3, seed=0, p=0.3):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    xs = jax.random.bernoulli(k1, p, (T, B, 6)).astype(jnp.zeros(()).dtype)
    ys = jax.random.randint(k2, (T, B), 0, 2)
    return xs, ys


def test_split_density_and_balance_of_the_default_network():
    net = ei_network(40, 2)
    assert (net.n_rec, net.n_exc, net.n_inh) == (800, 640, 160)
    sign = np.asarray(net.sign[...])
    np.testing.assert_array_equal(sign, np.r_[np.ones(640), -np.ones(160)])
    n_pairs, p = 800 * 800, 0.2
    assert abs(net.rec.n_syn - n_pairs * p) <= 5 * math.sqrt(n_pairs * p * (1 - p))
    pre = np.asarray(net.rec.pre_idx[...])
    w = np.abs(np.asarray(net.rec.W[...]))
    ratio = w[pre >= 640].mean() / w[pre < 640].mean()     # inhibition scaled by 640/160
    assert abs(ratio - 4.0) < 0.2


@pytest.fixture(scope="module")
def tiny():
    """A 20-neuron network in float64, its ES-D-RTRL learner and BPTT's."""
    net = ei_network(6, 2, **TINY)
    learners = {"es_d_rtrl": bs.online(net, bs.es_d_rtrl(decay=0.8)),
                "bptt": bs.online(net, bs.bptt())}
    xs, ys = data()
    states = {alg: l.init(jax.random.PRNGKey(0), xs[0]) for alg, l in learners.items()}
    return net, learners, states, xs, ys


def test_built_from_library_pieces_and_compiled_as_expected(tiny):
    net, learners, _, _, _ = tiny
    assert isinstance(net, EINetwork)
    assert (type(net.inp), type(net.rec), type(net.neuron), type(net.out)) == (
        Linear, SparseLinear, ALIF, LeakyReadout)
    g = learners["es_d_rtrl"].graph
    assert [op.kind for op in g.ops] == ["dense", "dense", "dense"]   # rec_compute="dense"
    seg = bs.online(ei_network(6, 2, **TINY, rec_compute="segment"), "es_d_rtrl")
    seg.init(jax.random.PRNGKey(0), data()[0][0])
    assert [op.kind for op in seg.graph.ops] == ["dense", "sparse", "dense"]
    assert len(g.readout_paths) == 2           # W_in and W_rec through the leaky readout
    # the readout rows of the inhibitory neurons are zero: readout from E only
    w_out = np.asarray(net.out.W[...])
    assert np.all(w_out[net.n_exc:] == 0) and np.all(w_out[:net.n_exc] != 0)


def numpy_run(net, params, xs):
    """The network's equations written out in numpy (float64)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    T, B, _ = xs.shape
    n, n_exc = net.n_rec, net.n_exc
    sign = np.where(np.arange(n) < n_exc, 1.0, -1.0)
    pre, post = np.asarray(net.rec.pre_idx[...]), np.asarray(net.rec.post_idx[...])
    w_rec = np.zeros((n, n))
    np.add.at(w_rec, (pre, post), np.abs(p["rec"]["W"]) * sign[pre])
    d, rho, kappa = math.exp(-1 / 20.0), math.exp(-1 / 50.0), math.exp(-1 / 5.0)
    v, a, z, r = np.zeros((B, n)), np.zeros((B, n)), np.zeros((B, n)), np.zeros((B, 2))
    spikes, outs = [], []
    for t in range(T):
        current = np.asarray(xs[t]) @ p["inp"]["W"] + z @ w_rec
        v = v * d + current * (1 - d)
        z = (v - (1.0 + 0.2 * a) > 0).astype(np.float64)
        v = v - z
        a = a * rho + z
        r = r * kappa + (z * (sign > 0)) @ p["out"]["W"]
        spikes.append(z)
        outs.append(r)
    return np.stack(spikes), np.stack(outs)


def test_equations_match_a_numpy_loop(tiny):
    net, learners, states, xs, _ = tiny
    state = states["es_d_rtrl"]
    spikes, outs = numpy_run(net, state.params, np.asarray(xs))
    assert 0.02 < spikes.mean() < 0.5
    np.testing.assert_array_equal(np.asarray(record_spikes(net, state.params, xs)), spikes)
    np.testing.assert_allclose(np.asarray(learners["es_d_rtrl"].predict(state, xs)), outs,
                               rtol=1e-10, atol=1e-12)


def test_online_readout_gradient_equals_bptt(tiny):
    net, learners, states, xs, ys = tiny
    g = {alg: learners[alg].sequence_grad(states[alg], xs, ys)[0] for alg in learners}
    g_on, g_bp = g["es_d_rtrl"]["out"]["W"], g["bptt"]["out"]["W"]
    assert np.linalg.norm(np.asarray(g_bp)[:net.n_exc]) > 1e-3
    assert np.all(np.asarray(g_on)[net.n_exc:] == 0)
    assert rel_err(g_on, g_bp) < 1e-9
    # the recurrent weights' online gradient is an approximation (negative control)
    assert rel_err(g["es_d_rtrl"]["rec"]["W"], g["bptt"]["rec"]["W"]) > 1e-6


def test_dale_law_holds_after_large_optimizer_steps(tiny):
    net, learners, states, xs, ys = tiny
    learner, params = learners["es_d_rtrl"], states["es_d_rtrl"].params
    opt = optax.sgd(1e4)
    opt_state = opt.init(params)
    w0 = np.asarray(params["rec"]["W"])
    for _ in range(3):
        grads = learner.sequence_grad(states["es_d_rtrl"]._replace(params=params), xs, ys)[0]
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    w = np.asarray(params["rec"]["W"])
    assert np.mean(np.sign(w) != np.sign(w0)) > 0.1     # the optimizer crossed zero often
    bs.to_nnx(net, params)
    pre = np.asarray(net.rec.pre_idx[...])
    values = np.asarray(net.rec.values())
    np.testing.assert_array_equal(values, np.abs(w) * np.where(pre < net.n_exc, 1.0, -1.0))
    assert np.all(values[pre < net.n_exc] >= 0) and np.all(values[pre >= net.n_exc] <= 0)
    dense = np.asarray(net.rec.to_dense())
    assert np.all(dense[:net.n_exc] >= 0) and np.all(dense[net.n_exc:] <= 0)
