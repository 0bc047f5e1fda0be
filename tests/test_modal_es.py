"""ES-D-RTRL with modal decays (``bs.es_d_rtrl(adaptive=True)``): exact on
linear dynamics the fixed decay cannot follow (a damped rotation, with and
without a leaky readout carrying its temporal path), the same in every
window, and a spiking network's gradient finite and close to BPTT's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import brainscale as bs
from gradcheck import flat, float64, spike

N_IN, N, N_OUT, T, B = 4, 5, 3, 40, 3


def rotation_model(readout: bool, omega=0.8, b=-0.05, dt=0.5):
    """A user's linear resonator: explicit-Euler rotation of (re, im) driven by
    x @ w_in; the output is tanh(im) @ w_out, or a leaky readout of im."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        h = {"re": jnp.zeros(N, x.dtype), "im": jnp.zeros(N, x.dtype)}
        if readout:
            h["o"] = jnp.zeros(N_OUT, x.dtype)
        return ({"w_in": jax.random.normal(k1, (N_IN, N), x.dtype),
                 "w_out": jax.random.normal(k2, (N, N_OUT), x.dtype) / 3}, h)

    def apply(p, h, x):
        re = h["re"] + dt * (b * h["re"] - omega * h["im"]) + x @ p["w_in"]
        im = h["im"] + dt * (omega * h["re"] + b * h["im"])
        if readout:
            o = 0.8 * h["o"] + im @ p["w_out"]
            return {"re": re, "im": im, "o": o}, o
        return {"re": re, "im": im}, jnp.tanh(im) @ p["w_out"]
    return bs.StepModel(init, apply)


def _grad(model, algorithm, xs, ys):
    learner = bs.online(model, algorithm)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    return learner.sequence_grad(state, xs, ys)[0]


def _data(dtype):
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (T, B, N_IN)).astype(dtype)
    ys = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, N_OUT)
    return xs, ys


@pytest.mark.parametrize("readout", [False, True])
def test_exact_on_a_linear_rotation(readout):
    with float64():
        xs, ys = _data(jnp.float64)
        model = rotation_model(readout)
        ref = _grad(model, bs.bptt(), xs, ys)["w_in"]
        fixed = _grad(model, bs.es_d_rtrl(0.9), xs, ys)["w_in"]
        err = lambda g: float(jnp.linalg.norm(g - ref) / jnp.linalg.norm(ref))  # noqa: E731
        assert err(fixed) > 0.3            # one real decay cannot follow the rotation
        for window in (None, 1, 7):
            g = _grad(model, bs.es_d_rtrl(0.9, window=window, adaptive=True), xs, ys)["w_in"]
            assert err(g) < 1e-10, (window, err(g))


def test_one_state_group_is_exact_and_real():
    """A leaky membrane a user clips to a safe range (its Jacobian 0.7 inside
    it): one real mode, exact to BPTT; the fixed decay 0.9 is not."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        return ({"w": jax.random.normal(k1, (N_IN, N), x.dtype),
                 "o": jax.random.normal(k2, (N, N_OUT), x.dtype) / 3},
                {"v": jnp.zeros(N, x.dtype)})

    def apply(p, h, x):
        v = jnp.clip(0.7 * h["v"] + x @ p["w"], -1e3, 1e3)
        return {"v": v}, jnp.tanh(v) @ p["o"]

    with float64():
        model = bs.StepModel(init, apply)
        xs, ys = _data(jnp.float64)
        ref = _grad(model, bs.bptt(), xs, ys)["w"]
        err = lambda g: float(jnp.linalg.norm(g - ref) / jnp.linalg.norm(ref))  # noqa: E731
        assert err(_grad(model, bs.es_d_rtrl(0.9), xs, ys)["w"]) > 0.05
        learner = bs.online(model, bs.es_d_rtrl(0.9, adaptive=True))
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        assert not any(jnp.iscomplexobj(t) for t in jax.tree.leaves(state))
        assert err(learner.sequence_grad(state, xs, ys)[0]["w"]) < 1e-10


def test_spiking_network_close_to_bptt():
    """A recurrent LIF layer written in plain JAX: modal traces give a finite
    gradient pointing the way BPTT's does."""
    def init(rng, x):
        k1, k2, k3 = jax.random.split(rng, 3)
        return ({"w": 3 * jax.random.normal(k1, (N_IN, 16)) / 2,
                 "r": jax.random.normal(k2, (16, 16)) / 4,
                 "o": jax.random.normal(k3, (16, N_OUT)) / 4},
                {"v": jnp.zeros(16), "s": jnp.zeros(16)})

    def apply(p, h, x):
        v = 0.9 * h["v"] + x @ p["w"] + h["s"] @ p["r"]
        s = spike(v - 1.0)
        return {"v": v - s, "s": s}, s @ p["o"]

    model = bs.StepModel(init, apply)
    xs, ys = _data(jnp.float32)
    ref = _grad(model, bs.bptt(), xs, ys)
    g = _grad(model, bs.es_d_rtrl(0.9, adaptive=True), xs, ys)
    a, b = flat(g), flat(ref)
    assert np.all(np.isfinite(a))
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.9


def test_options_are_checked():
    with pytest.raises(ValueError, match="adapt_rate"):
        bs.es_d_rtrl(adaptive=True, adapt_rate=1.0)
    assert bs.es_d_rtrl(adaptive=True) != bs.es_d_rtrl()


def test_side_by_side_runs_name_the_adaptive_variant():
    from brainscale.train.compare import learner_options
    from brainscale.train.plot_labels import algorithm_label

    assert learner_options("es_d_rtrl:adaptive", 0.8) == (
        "es_d_rtrl", {"decay": 0.8, "adaptive": True})
    assert learner_options("es_d_rtrl", 0.8) == ("es_d_rtrl", {"decay": 0.8})
    assert algorithm_label("es_d_rtrl:adaptive") == "ES-D-RTRL-adaptive"
    for bad in ("es_d_rtrl:fast", "bptt:adaptive"):
        with pytest.raises(ValueError, match="adaptive"):
            learner_options(bad, 0.9)


def test_window_filters_match_the_explicit_sums():
    """The window's backward sweep equals its definition, written out:
    ubar_s = sum_{t>s} (prod_{s<r<t} lam_r) u_t, v = sum_t (prod_{r<t} lam_r) u_t,
    for complex decays varying per step and sample."""
    from transforms.learning.modal_es import _filters

    with float64():
        rng = np.random.default_rng(0)
        n, b, m = 9, 3, 4
        lams = rng.uniform(0.3, 0.95, (n, b)) * np.exp(1j * rng.uniform(-2, 2, (n, b)))
        u = rng.normal(size=(n, b, m)) + 1j * rng.normal(size=(n, b, m))
        ubar, v = _filters(jnp.asarray(lams), jnp.asarray(u))
        want_ubar, want_v = np.zeros_like(u), np.zeros_like(u[0])
        for t in range(n):
            want_v += np.prod(lams[:t], axis=0)[:, None] * u[t]
            for s in range(t):
                want_ubar[s] += np.prod(lams[s + 1:t], axis=0)[:, None] * u[t]
        np.testing.assert_allclose(ubar, want_ubar, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(v, want_v, rtol=1e-12, atol=1e-12)
