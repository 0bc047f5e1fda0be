"""Synapse dynamics against closed-form kernels and numpy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from brainscale.nn.state import HiddenState
from brainscale.nn.synapses import STD, STP, Alpha, Delta, DualExpon, Expon
from nnx_run import check_batched as _check_batched, run as _run

N = 5


def _impulse(T, n=N, amp=1.0):
    x = np.zeros((T, n), np.float32)
    x[0] = amp
    return x


def _spike_train(T, p, seed, n=N):
    return (np.random.default_rng(seed).random((T, n)) < p).astype(np.float32)


def test_delta_is_identity_without_state():
    m = Delta(N)
    x = jnp.arange(N, dtype=jnp.float32)
    np.testing.assert_array_equal(m(x), x)
    assert len(jax.tree.leaves(nnx.state(m, HiddenState))) == 0


def test_expon_impulse_and_random_input():
    tau, dt, T = 8.0, 0.5, 40
    y, _ = _run(Expon(N, tau=tau, dt=dt), _impulse(T))
    np.testing.assert_allclose(y[:, 0], np.exp(-np.arange(T) * dt / tau), rtol=1e-5)
    x = np.random.default_rng(0).normal(size=(T, N)).astype(np.float32)
    y, st = _run(Expon(N, tau, dt), x)
    g = np.zeros(N)
    for t in range(T):
        g = g * np.exp(-dt / tau) + x[t]
        np.testing.assert_allclose(y[t], g, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(st[t]["g"], g, rtol=1e-5, atol=1e-6)


def test_dual_expon_kernel_has_unit_peak():
    tr, td, dt, T = 2.0, 10.0, 0.1, 600
    y, st = _run(DualExpon(N, tau_rise=tr, tau_decay=td, dt=dt), _impulse(T))
    t = np.arange(T) * dt
    t_peak = tr * td / (td - tr) * np.log(td / tr)
    norm = 1.0 / (np.exp(-t_peak / td) - np.exp(-t_peak / tr))
    np.testing.assert_allclose(y[:, 0], norm * (np.exp(-t / td) - np.exp(-t / tr)), atol=1e-5)
    assert y[:, 0].max() == pytest.approx(1.0, abs=1e-3)
    assert abs(t[np.argmax(y[:, 0])] - t_peak) <= dt
    assert set(st[0]) == {"g_rise", "g_decay"}
    with pytest.raises(ValueError):
        DualExpon(N, tau_rise=5.0, tau_decay=2.0)


def test_alpha_kernel_and_random_input():
    tau, dt, T = 4.0, 0.5, 60
    y, st = _run(Alpha(N, tau=tau, dt=dt), _impulse(T))
    t = np.arange(T) * dt
    np.testing.assert_allclose(y[:, 0], (t / tau) * np.exp(1 - t / tau), atol=1e-5)
    assert y[:, 0].max() == pytest.approx(1.0, abs=1e-6)
    assert t[np.argmax(y[:, 0])] == pytest.approx(tau)
    assert set(st[0]) == {"h", "g"}
    # linearity: random input equals the convolution with the kernel
    x = np.random.default_rng(1).normal(size=(T, N))
    y, _ = _run(Alpha(N, tau=tau, dt=dt), x.astype(np.float32))
    k = (t / tau) * np.exp(1 - t / tau)
    conv = np.stack([sum(k[t0 - s] * x[s] for s in range(t0 + 1)) for t0 in range(T)])
    np.testing.assert_allclose(y, conv, atol=1e-4)


def test_std_matches_numpy_loop():
    tau_d, U, dt, T = 50.0, 0.4, 1.0, 200
    s = _spike_train(T, 0.2, seed=2)
    y, st = _run(STD(N, tau_d=tau_d, U=U, dt=dt), s)
    x = np.ones(N)
    for t in range(T):
        out = U * x * s[t]
        x = x + dt * (1 - x) / tau_d - U * x * s[t]
        np.testing.assert_allclose(y[t], out, atol=1e-6)
        np.testing.assert_allclose(st[t]["x"], x, atol=1e-5)
    # depression: successive releases of a regular train decrease
    reg = np.zeros((T, 1), np.float32)
    reg[::5] = 1.0
    y, _ = _run(STD(1, tau_d=tau_d, U=U, dt=dt), reg)
    rel = y[::5, 0]
    assert rel[0] == pytest.approx(U) and np.all(np.diff(rel[:10]) < 0)


def test_stp_matches_numpy_loop():
    U, tau_f, tau_d, dt, T = 0.1, 300.0, 100.0, 1.0, 300
    s = _spike_train(T, 0.1, seed=3)
    y, st = _run(STP(N, U=U, tau_f=tau_f, tau_d=tau_d, dt=dt), s)
    u, x = np.full(N, U), np.ones(N)
    for t in range(T):
        u = u + dt * (U - u) / tau_f + U * (1 - u) * s[t]
        out = u * x * s[t]
        x = x + dt * (1 - x) / tau_d - u * x * s[t]
        np.testing.assert_allclose(y[t], out, atol=1e-6)
        np.testing.assert_allclose(st[t]["u"], u, atol=1e-5)
        np.testing.assert_allclose(st[t]["x"], x, atol=1e-5)
    # facilitation: with tau_f >> tau_d and small U the second release is larger
    pair = np.zeros((30, 1), np.float32)
    pair[[0, 10]] = 1.0
    y, _ = _run(STP(1, U=U, tau_f=tau_f, tau_d=tau_d, dt=dt), pair)
    assert y[0, 0] == pytest.approx(U + U * (1 - U)) and y[10, 0] > y[0, 0]


def test_synapse_outputs_are_differentiable():
    graphdef, state = nnx.split(STP(N, U=0.2))
    g = jax.grad(lambda s: jnp.sum(nnx.merge(graphdef, state, copy=True)(s)))(jnp.ones(N))
    # d out / d s = u' x + s x dU(1-u)/ds  at u = U, x = 1, s = 1
    u_new = 0.2 + 0.2 * 0.8
    np.testing.assert_allclose(g, u_new + 0.2 * 0.8, rtol=1e-6)


@pytest.mark.parametrize("make,kind", [
    (lambda: Expon(N, tau=5.0), "real"),
    (lambda: DualExpon(N, 1.0, 5.0), "real"),
    (lambda: Alpha(N, tau=3.0), "real"),
    (lambda: STD(N), "spikes"),
    (lambda: STP(N), "spikes"),
    (lambda: Delta(N), "real"),
], ids=["Expon", "DualExpon", "Alpha", "STD", "STP", "Delta"])
def test_jit_and_vmap(make, kind):
    rs = np.random.default_rng(4)
    xs = (rs.random((20, 3, N)) < 0.3) if kind == "spikes" else rs.normal(size=(20, 3, N))
    _check_batched(make, xs.astype(np.float32))
