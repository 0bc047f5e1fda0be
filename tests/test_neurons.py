"""Neuron dynamics against independent numpy loops of the published equations."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from brainscale.nn.neurons import ALIF, GIF, LIF, QIF, ExpIF, Izhikevich, expif_update, lif_update
from brainscale.nn.state import HiddenState
from brainscale.nn.surrogate import Sigmoid, Triangle
from nnx_run import check_batched, run as _run, run_batched

N, T = 6, 60


def _currents(lo, hi, seed=0, n=N, t=T):
    return np.random.default_rng(seed).uniform(lo, hi, size=(t, n)).astype(np.float32)


def _check_batched(make, xs):
    """jit(vmap(step)) over a batch equals running each sample alone, and an
    eager (un-jitted) call gives the same as jit."""
    check_batched(make, xs)
    ys = run_batched(make(), xs[:5])
    m = make()
    eager = np.stack([np.asarray(m(jnp.asarray(x))) for x in xs[:5, 0]])
    np.testing.assert_allclose(eager, ys[:, 0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- LIF

def _np_lif(I, *, dt, tau, v_th, v_reset, v_rest, R, reset, integrator, tau_ref=0.0):
    v = np.full(I.shape[1], 0.0)
    ref = np.zeros(I.shape[1])
    out_s, out_v = [], []
    for t in range(I.shape[0]):
        if integrator == "exp":
            v = v_rest + (v - v_rest) * np.exp(-dt / tau) + R * I[t] * (1 - np.exp(-dt / tau))
        else:
            v = v + dt / tau * (v_rest - v + R * I[t])
        v = np.where(ref > 0, v_reset, v)
        s = (v > v_th).astype(float)
        if reset == "soft":
            v = v - (v_th - v_reset) * s
        else:
            v = np.where(s > 0, v_reset, v)
        ref = np.where(s > 0, tau_ref / dt, np.maximum(ref - 1, 0))
        out_s.append(s)
        out_v.append(v.copy())
    return np.stack(out_s), np.stack(out_v)


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("integrator", ["exp", "euler"])
def test_lif_matches_numpy(reset, integrator):
    kw = dict(dt=0.5, tau=10.0, v_th=1.0, v_reset=-0.2, v_rest=0.1, R=2.0)
    I = _currents(0.0, 4.0)
    m = LIF(N, reset=reset, integrator=integrator, **kw)
    s, st = _run(m, I)
    s_ref, v_ref = _np_lif(I, reset=reset, integrator=integrator, **kw)
    assert s_ref.sum() > 5
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_allclose(np.stack([x["v"] for x in st]), v_ref, atol=1e-5)
    assert not hasattr(m, "ref")


def test_lif_refractory_clamps():
    dt, tau_ref = 0.5, 1.5  # 3 clamped steps after each spike
    I = np.full((T, N), 5.0, np.float32)
    I[:, 0] = 0.0
    m = LIF(N, dt=dt, tau=5.0, tau_ref=tau_ref, v_reset=0.0, reset="hard")
    assert isinstance(m.ref, HiddenState) and m.ref[...].dtype == jnp.float32
    s, st = _run(m, I)
    s_ref, v_ref = _np_lif(I, dt=dt, tau=5.0, v_th=1.0, v_reset=0.0, v_rest=0.0, R=1.0,
                           reset="hard", integrator="exp", tau_ref=tau_ref)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_allclose(np.stack([x["v"] for x in st]), v_ref, atol=1e-5)
    spk_t = np.nonzero(s[:, 1])[0]
    assert len(spk_t) >= 3
    for t0 in spk_t[:-1]:
        v = np.stack([x["v"] for x in st])[t0 + 1:t0 + 4, 1]
        np.testing.assert_array_equal(v, 0.0)      # clamped for 3 steps
        assert s[t0 + 1:t0 + 4, 1].sum() == 0
    assert np.all(np.diff(spk_t) > 3)
    # without refractoriness the same drive fires more often
    s_free, _ = _run(LIF(N, dt=dt, tau=5.0, reset="hard"), I)
    assert s_free[:, 1].sum() > s[:, 1].sum()


def test_lif_surrogate_gradient_and_detach_reset():
    sf = Triangle(width=1.0)
    d = math.exp(-1.0 / 20.0)
    v0 = jnp.array([0.95, 0.5, 1.2])
    cur = jnp.array([0.9, 0.2, 1.5])
    x = (np.asarray(v0) * d + np.asarray(cur) * (1 - d) - 1.0) / 1.0
    tri = np.clip(1 - np.abs(x), 0, None)
    ds_dI = jax.jit(jax.grad(lambda c: jnp.sum(lif_update(v0, c, decay=d, spike_fn=sf)[1])))(cur)
    np.testing.assert_allclose(ds_dI, tri * (1 - d), rtol=1e-5)
    dv_dv = jax.jit(jax.grad(lambda v: jnp.sum(lif_update(v, cur, decay=d, spike_fn=sf)[0])))(v0)
    np.testing.assert_allclose(dv_dv, d * (1 - tri), rtol=1e-5, atol=1e-7)
    dv_dv_det = jax.jit(jax.grad(lambda v: jnp.sum(
        lif_update(v, cur, decay=d, spike_fn=sf, detach_reset=True)[0])))(v0)
    np.testing.assert_allclose(dv_dv_det, d * np.ones(3), rtol=1e-6)


# ---------------------------------------------------------------- ALIF

def test_alif_matches_numpy():
    dt, tau, tau_a, beta, v_th = 1.0, 20.0, 100.0, 0.2, 1.0
    I = _currents(0.0, 3.0, seed=1)
    s, st = _run(ALIF(N, dt=dt, tau=tau, tau_a=tau_a, beta=beta, v_th=v_th), I)
    alpha, rho = np.exp(-dt / tau), np.exp(-dt / tau_a)
    v, a = np.zeros(N), np.zeros(N)
    for t in range(T):
        A = v_th + beta * a
        v = alpha * v + (1 - alpha) * I[t]
        z = (v > A).astype(float)
        v = v - v_th * z
        a = rho * a + z
        np.testing.assert_array_equal(s[t], z)
        np.testing.assert_allclose(st[t]["v"], v, atol=1e-5)
        np.testing.assert_allclose(st[t]["a"], a, atol=1e-5)
    assert s.sum() > 5
    # adaptation lowers the rate relative to beta=0
    s0, _ = _run(ALIF(N, dt=dt, tau=tau, tau_a=tau_a, beta=0.0), I)
    assert s0.sum() > s.sum()


# ---------------------------------------------------------------- GIF

def test_gif_matches_numpy():
    p = dict(dt=0.5, tau=20.0, R=1.0, v_rest=0.0, v_reset=0.0, theta_inf=1.0,
             theta_reset=1.2, a=0.005, b=0.01, k1=0.2, k2=0.02, R1=0.5, R2=1.0,
             A1=0.3, A2=-0.1)
    I = _currents(1.0, 4.0, seed=2, t=200)
    s, st = _run(GIF(N, **p), I)
    v, th, i1, i2 = np.zeros(N), np.ones(N), np.zeros(N), np.zeros(N)
    dt = p["dt"]
    for t in range(I.shape[0]):
        e = np.exp(-dt / p["tau"])
        v_new = p["v_rest"] + (v - p["v_rest"]) * e + p["R"] * (I[t] + i1 + i2) * (1 - e)
        th_new = p["theta_inf"] + (th - p["theta_inf"]) * np.exp(-p["b"] * dt) + p["a"] * dt * (v - p["v_rest"])
        i1 = i1 * np.exp(-p["k1"] * dt)
        i2 = i2 * np.exp(-p["k2"] * dt)
        v, th = v_new, th_new
        z = v > th
        i1 = np.where(z, p["R1"] * i1 + p["A1"], i1)
        i2 = np.where(z, p["R2"] * i2 + p["A2"], i2)
        v = np.where(z, p["v_reset"], v)
        th = np.where(z, np.maximum(p["theta_reset"], th), th)
        np.testing.assert_array_equal(s[t], z.astype(float))
        for k, ref in dict(v=v, theta=th, i1=i1, i2=i2).items():
            np.testing.assert_allclose(st[t][k], ref, atol=1e-4, err_msg=k)
    assert s.sum() > 10


def test_gif_defaults_spike_for_moderate_current():
    I = np.tile(np.array([0.5, 1.5, 2.0, 3.0], np.float32), (300, 1))
    s, _ = _run(GIF(4), I)
    counts = s.sum(0)
    assert counts[0] == 0 and np.all(counts[1:] > 0) and np.all(np.diff(counts[1:]) > 0)


# ---------------------------------------------------------------- Izhikevich

def test_izhikevich_matches_numpy():
    a, b, c, d, dt = 0.02, 0.2, -65.0, 8.0, 0.5
    I = _currents(5.0, 15.0, seed=3, t=300)
    s, st = _run(Izhikevich(N, dt=dt), I)
    v, u = np.full(N, -65.0), np.full(N, b * -65.0)
    for t in range(I.shape[0]):
        v_new = v + dt * (0.04 * v ** 2 + 5 * v + 140 - u + I[t])
        u = u + dt * a * (b * v - u)
        v = v_new
        z = v > 30.0
        v = np.where(z, c, v)
        u = np.where(z, u + d, u)
        np.testing.assert_array_equal(s[t], z.astype(float))
        np.testing.assert_allclose(st[t]["v"], v, rtol=1e-4, atol=2e-2)
        np.testing.assert_allclose(st[t]["u"], u, rtol=1e-4, atol=2e-2)
    assert s.sum() > 10
    assert max(x["v"].max() for x in st) < 30.0


# ---------------------------------------------------------------- ExpIF / QIF

def test_expif_matches_numpy_and_is_finite():
    dt, tau, dT, vT, vth = 1.0, 20.0, 0.2, 1.0, 2.0
    I = _currents(0.0, 2.0, seed=4)
    s, st = _run(ExpIF(N, dt=dt, tau=tau, delta_T=dT, v_T=vT, v_th=vth, R=1.5), I)
    v = np.zeros(N)
    for t in range(T):
        v = v + dt / tau * (-v + dT * np.exp((v - vT) / dT) + 1.5 * I[t])
        z = v > vth
        v = np.where(z, 0.0, v)
        np.testing.assert_array_equal(s[t], z.astype(float))
        np.testing.assert_allclose(st[t]["v"], v, atol=1e-4)
    assert s.sum() > 5
    # a huge membrane potential stays finite (clipped exponent), spikes and resets
    out, st = _run(ExpIF(N, v_init=1e4), np.ones((2, N), np.float32))
    assert np.all(np.isfinite(st[0]["v"])) and np.all(out[0] == 1.0)
    g = jax.jit(jax.grad(lambda v: jnp.sum(expif_update(v, jnp.ones_like(v), dt=1.0)[0])))(
        jnp.full(N, 1e4))
    assert np.all(np.isfinite(np.asarray(g)))


def test_qif_matches_numpy():
    dt, tau, a0, vc, vth = 1.0, 10.0, 1.0, 1.0, 2.0
    I = _currents(0.0, 1.5, seed=5)
    s, st = _run(QIF(N, dt=dt, tau=tau, a0=a0, v_c=vc, v_th=vth, R=1.5), I)
    v = np.zeros(N)
    for t in range(T):
        v = v + dt / tau * (a0 * v * (v - vc) + 1.5 * I[t])
        z = v > vth
        v = np.where(z, 0.0, v)
        np.testing.assert_array_equal(s[t], z.astype(float))
        np.testing.assert_allclose(st[t]["v"], v, atol=1e-4)
    assert s.sum() > 5


# ---------------------------------------------------------------- jit / vmap

@pytest.mark.parametrize("make,lo,hi", [
    (lambda: LIF(N, tau_ref=2.0, spike_fn=Sigmoid(2.0)), 0.0, 4.0),
    (lambda: LIF(N, reset="hard", detach_reset=True), 0.0, 4.0),
    (lambda: ALIF(N), 0.0, 4.0),
    (lambda: GIF(N), 1.0, 3.0),
    (lambda: Izhikevich(N), 5.0, 15.0),
    (lambda: ExpIF(N), 0.5, 3.0),
    (lambda: QIF(N), 0.0, 2.0),
], ids=["LIF-ref", "LIF-hard", "ALIF", "GIF", "Izhikevich", "ExpIF", "QIF"])
def test_jit_and_vmap(make, lo, hi):
    xs = np.random.default_rng(7).uniform(lo, hi, size=(25, 3, N)).astype(np.float32)
    _check_batched(make, xs)


def test_hidden_states_are_per_neuron():
    for m in [LIF(N, tau_ref=1.0), ALIF(N), GIF(N), Izhikevich(N), ExpIF(N), QIF(N)]:
        _, hidden, params = nnx.split(m, HiddenState, nnx.Param)[:3]
        assert len(jax.tree.leaves(params)) == 0
        for leaf in jax.tree.leaves(hidden):
            assert leaf.shape == (N,) and leaf.dtype == jnp.float32
