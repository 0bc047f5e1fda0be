"""e-prop as D-RTRL with a broadcast learning signal.

- symmetric e-prop (B = W_out^T) IS D-RTRL: identical gradients;
- random e-prop equals a hand-written numpy e-prop (Bellec et al. 2020) for
  a LIF layer with the reset detached and a linear readout:
  eps_t = d eps_{t-1} + (1 - d) x_t, e_t = psi_t eps_t,
  L_t = B (pi_t - pi*_t), dW_in = <sum_t L_t e_t>, dW_out exact; and with
  a leaky readout (kappa), each e_t filtered by kappa;
- a step with no readout to replace is refused;
- feedback only changes the backward pass: the outputs are unchanged.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import brainscale as bs
from brainscale.nn.neurons import LIF
from brainscale.nn.readout import LeakyReadout
from gradcheck import float64

TAU, VTH, ALPHA, KAPPA_TAU = 5.0, 0.5, 4.0, 4.0


@pytest.fixture(autouse=True)
def x64():
    with float64():
        yield


class OneLayer(nnx.Module):
    def __init__(self, rngs, n_in=5, n=7, n_out=3):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64, use_bias=False)
        self.inp = nnx.Linear(n_in, n, rngs=rngs, **f64)
        self.lif = LIF(n, tau=TAU, v_th=VTH, detach_reset=True)
        self.out = nnx.Linear(n, n_out, rngs=rngs, **f64)

    def __call__(self, x):
        return self.out(self.lif(self.inp(3.0 * x)))


def data(T=25, B=4):
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (T, B, 5)).astype(jnp.float64)
    ys = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, 3)
    return xs, ys


def grads(algorithm, model=None, **kw):
    learner = bs.online((model or OneLayer)(nnx.Rngs(0)), algorithm, **kw)
    xs, ys = data()
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    g, _ = learner.sequence_grad(state, xs, ys)
    return learner, state, g


def test_symmetric_e_prop_is_d_rtrl():
    _, _, g_e = grads("e_prop")
    _, _, g_d = grads("d_rtrl")
    for a, b in zip(jax.tree.leaves(g_e), jax.tree.leaves(g_d)):
        np.testing.assert_array_equal(a, b)


def eprop_numpy(w_in, w_out, B_fb, xs, ys, kappa=0.0):
    """e-prop by hand: the learning signal L_t = B (pi_t - pi*_t) meets each
    eligibility trace psi eps filtered by the readout's leak kappa (a leaky
    readout o_t = kappa o_{t-1} + s_t W_out carries s_<t into o_t; kappa 0:
    a linear readout), and W_out's gradient meets the filtered spikes."""
    T, Bn, _ = xs.shape
    d = math.exp(-1.0 / TAU)
    n = w_in.shape[1]
    v, o = np.zeros((Bn, n)), np.zeros((Bn, w_out.shape[1]))
    eps, ebar = np.zeros((Bn,) + w_in.shape), np.zeros((Bn,) + w_in.shape)
    sbar = np.zeros((Bn, n))
    g_in, g_out = np.zeros_like(w_in), np.zeros_like(w_out)
    for t in range(T):
        x = 3.0 * xs[t]
        v = v * d + (x @ w_in) * (1 - d)
        z = (v - VTH) / VTH
        s = (z >= 0).astype(float)
        sg = 1 / (1 + np.exp(-ALPHA * z))
        psi = ALPHA * sg * (1 - sg) / VTH                 # d s / d v
        eps = d * eps + (1 - d) * x[:, :, None]           # d v / d W_in, per synapse
        ebar = kappa * ebar + psi[:, None, :] * eps
        sbar = kappa * sbar + s
        o = kappa * o + s @ w_out
        p = np.exp(o - o.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        err = p - np.eye(w_out.shape[1])[ys[t]]           # pi - pi*
        L = err @ B_fb.T                                   # broadcast back: (B, n)
        g_in += np.einsum("bj,bij->ij", L, ebar) / Bn
        g_out += sbar.T @ err / Bn
        v = v - VTH * s                                    # detached soft reset
    return g_in / T, g_out / T


def test_random_e_prop_equals_numpy():
    learner, state, g = grads("e_prop", feedback="random", feedback_seed=3)
    (k,) = learner.graph.feedback
    assert learner.graph.ops[k].path == "params['out']['kernel']"
    B_fb = np.asarray(learner.graph.feedback[k])
    xs, ys = data()
    w_in, w_out = (np.asarray(state.params[n]["kernel"]) for n in ("inp", "out"))
    assert not np.allclose(B_fb, w_out)
    g_in, g_out = eprop_numpy(w_in, w_out, B_fb, np.asarray(xs), np.asarray(ys))
    assert np.max(np.abs(g_in)) > 1e-4                         # the neurons spiked
    np.testing.assert_allclose(g["inp"]["kernel"], g_in, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(g["out"]["kernel"], g_out, rtol=1e-9, atol=1e-14)
    # feedback changes the backward pass only
    plain = bs.online(OneLayer(nnx.Rngs(0)), "d_rtrl")
    np.testing.assert_array_equal(learner.predict(state, xs),
                                  plain.predict(plain.init(jax.random.PRNGKey(0), xs[0]), xs))


class LeakyOut(nnx.Module):
    """The same layer read by a leaky integrator, as e-prop's papers and
    brainscale's own tasks read their networks: o_t = kappa o_{t-1} + s_t W_out."""
    def __init__(self, rngs, n_in=5, n=7, n_out=3):
        self.inp = nnx.Linear(n_in, n, rngs=rngs, dtype=jnp.float64, param_dtype=jnp.float64,
                              use_bias=False)
        self.lif = LIF(n, tau=TAU, v_th=VTH, detach_reset=True)
        self.out = LeakyReadout(n, n_out, tau=KAPPA_TAU, rngs=rngs)

    def __call__(self, x):
        return self.out(self.lif(self.inp(3.0 * x)))


def test_random_e_prop_through_a_leaky_readout_equals_numpy():
    """The feedback matrix replaces the leaky readout's weights (found
    whether or not the learner carries readout paths): the gradient equals
    the hand-written e-prop, and differs from D-RTRL's."""
    learner, state, g = grads("e_prop", model=LeakyOut, feedback="random", feedback_seed=5)
    (k,) = learner.graph.feedback
    assert learner.graph.ops[k].path == "params['out']['W']"
    B_fb = np.asarray(learner.graph.feedback[k])
    xs, ys = data()
    w_in, w_out = np.asarray(state.params["inp"]["kernel"]), np.asarray(state.params["out"]["W"])
    g_in, g_out = eprop_numpy(w_in, w_out, B_fb, np.asarray(xs), np.asarray(ys),
                              kappa=math.exp(-1.0 / KAPPA_TAU))
    assert np.max(np.abs(g_in)) > 1e-4
    np.testing.assert_allclose(g["inp"]["kernel"], g_in, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(g["out"]["W"], g_out, rtol=1e-9, atol=1e-14)
    _, _, g_d = grads("d_rtrl", model=LeakyOut)
    assert not np.allclose(g["inp"]["kernel"], g_d["inp"]["kernel"], rtol=1e-3)
    np.testing.assert_allclose(g["out"]["W"], g_d["out"]["W"], rtol=1e-12)


def test_random_feedback_without_a_readout_is_refused():
    """A step whose output is a neuron's own state has no readout weights to
    replace: random feedback would silently equal D-RTRL, so it is an error."""
    def init(rng, x):
        return {"w": jax.random.normal(rng, (5, 3))}, {"v": jnp.zeros(3, x.dtype)}

    def apply(p, h, x):
        v = 0.8 * h["v"] + x @ p["w"]
        return {"v": v}, v

    xs, _ = data()
    with pytest.raises(bs.CompileError, match="feedback='random' found no readout"):
        bs.online(bs.StepModel(init, apply), "e_prop", feedback="random").init(
            jax.random.PRNGKey(0), xs[0])


def test_random_feedback_is_not_the_users_readout():
    """A user's init that splits PRNGKey(0) as ``k1, k2 = split(rng)`` and
    draws W_out = normal(k2) must not get B parallel to W_out (that would
    be symmetric e-prop): the feedback draws from a key stream of its own."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        return ({"w": jax.random.normal(k1, (5, 6)), "wo": jax.random.normal(k2, (6, 3))},
                {"v": jnp.zeros(6, x.dtype)})

    def apply(p, h, x):
        v = 0.8 * h["v"] + x @ p["w"]
        return {"v": v}, jnp.tanh(v) @ p["wo"]

    xs, _ = data()
    learner = bs.online(bs.StepModel(init, apply), "e_prop", feedback="random")
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    (B_fb,) = learner.graph.feedback.values()
    b, w = np.ravel(B_fb), np.ravel(state.params["wo"])
    assert abs(b @ w) / (np.linalg.norm(b) * np.linalg.norm(w)) < 0.9


def test_random_feedback_needs_e_prop():
    with pytest.raises(ValueError, match="'d_rtrl' has no option 'feedback'"):
        bs.online(OneLayer(nnx.Rngs(0)), "d_rtrl", feedback="random")
    with pytest.raises(TypeError):
        bs.d_rtrl(feedback="random")


def test_side_by_side_runs_name_random_feedback():
    from brainscale.train.compare import learner_options
    from brainscale.train.plot_labels import algorithm_label

    assert learner_options("e_prop:random", 0.9) == ("e_prop", {"feedback": "random"})
    assert learner_options("e_prop", 0.9) == ("e_prop", {})
    assert bs.ALGORITHMS["e_prop"](**learner_options("e_prop:random", 0.9)[1]).feedback == "random"
    assert algorithm_label("e_prop:random") == "e-prop-random"
    with pytest.raises(ValueError, match="e_prop:random"):
        learner_options("e_prop:symmetrical", 0.9)
    with pytest.raises(ValueError, match="e_prop:random"):
        learner_options("d_rtrl:random", 0.9)
