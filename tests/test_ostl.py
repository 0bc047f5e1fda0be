"""OSTL (Bohnstingl et al. 2022) on feed-forward spiking layers is D-RTRL:
a per-layer eligibility trace through the layer's own (diagonal) dynamics,
and a spatial learning signal backpropagated across the layers at the same
step only. A hand-written numpy OSTL of a 2-layer LIF network (reset
detached) equals ``bs.online(..., "ostl")``; on a recurrent weight OSTL
would need the full layer Jacobian and is refused by name."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import brainscale as bs
from brainscale.nn.neurons import LIF
from gradcheck import float64

TAU, VTH, ALPHA = 5.0, 0.5, 4.0


@pytest.fixture(autouse=True)
def x64():
    with float64():
        yield


class TwoLayer(nnx.Module):
    def __init__(self, rngs, n_in=5, n1=7, n2=6, n_out=3):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64, use_bias=False)
        self.w1 = nnx.Linear(n_in, n1, rngs=rngs, **f64)
        self.l1 = LIF(n1, tau=TAU, v_th=VTH, detach_reset=True)
        self.w2 = nnx.Linear(n1, n2, rngs=rngs, **f64)
        self.l2 = LIF(n2, tau=TAU, v_th=VTH, detach_reset=True)
        self.w3 = nnx.Linear(n2, n_out, rngs=rngs, **f64)

    def __call__(self, x):
        return self.w3(self.l2(self.w2(self.l1(self.w1(3.0 * x)))))


def lif(v, current, d):
    v = v * d + current * (1 - d)
    z = (v - VTH) / VTH
    s = (z >= 0).astype(float)
    sg = 1 / (1 + np.exp(-ALPHA * z))
    return v, s, ALPHA * sg * (1 - sg) / VTH


def ostl_numpy(w1, w2, w3, xs, ys):
    T, B, _ = xs.shape
    d = math.exp(-1.0 / TAU)
    v1, v2 = np.zeros((B, w1.shape[1])), np.zeros((B, w2.shape[1]))
    e1, e2 = np.zeros((B,) + w1.shape), np.zeros((B,) + w2.shape)
    g1, g2, g3 = np.zeros_like(w1), np.zeros_like(w2), np.zeros_like(w3)
    for t in range(T):
        x = 3.0 * xs[t]
        v1, s1, psi1 = lif(v1, x @ w1, d)
        v2, s2, psi2 = lif(v2, s1 @ w2, d)
        e1 = d * e1 + (1 - d) * x[:, :, None]            # temporal, layer 1 only
        e2 = d * e2 + (1 - d) * s1[:, :, None]           # temporal, layer 2 only
        logits = s2 @ w3
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        d3 = p - np.eye(w3.shape[1])[ys[t]]
        dv2 = (d3 @ w3.T) * psi2                          # spatial, same step
        dv1 = ((1 - d) * dv2 @ w2.T) * psi1
        g1 += np.einsum("bj,bij->ij", dv1, e1) / B
        g2 += np.einsum("bj,bij->ij", dv2, e2) / B
        g3 += s2.T @ d3 / B
        v1, v2 = v1 - VTH * s1, v2 - VTH * s2
    return g1 / T, g2 / T, g3 / T


def test_ostl_equals_numpy_on_two_feed_forward_layers():
    learner = bs.online(TwoLayer(nnx.Rngs(0)), "ostl")
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (25, 4, 5)).astype(jnp.float64)
    ys = jax.random.randint(jax.random.PRNGKey(2), (25, 4), 0, 3)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    g, _ = learner.sequence_grad(state, xs, ys)
    w = [np.asarray(state.params[k]["kernel"]) for k in ("w1", "w2", "w3")]
    want = ostl_numpy(*w, np.asarray(xs), np.asarray(ys))
    assert np.max(np.abs(want[0])) > 1e-4                    # both layers spiked
    for k, ref in zip(("w1", "w2", "w3"), want):
        np.testing.assert_allclose(g[k]["kernel"], ref, rtol=1e-9, atol=1e-14, err_msg=k)


class Recurrent(nnx.Module):
    def __init__(self, rngs):
        self.inp = nnx.Linear(3, 4, rngs=rngs)
        self.rec = nnx.Linear(4, 4, use_bias=False, rngs=rngs)
        self.lif = LIF(4)
        self.s = bs.HiddenState(jnp.zeros(4))

    def __call__(self, x):
        s = self.lif(self.inp(x) + self.rec(self.s[...]))
        self.s[...] = s
        return s


def test_ostl_refuses_a_recurrent_weight():
    with pytest.raises(bs.CompileError, match="OSTL on the recurrent weight params\\['rec'\\]"):
        bs.online(Recurrent(nnx.Rngs(0)), "ostl").init(jax.random.PRNGKey(0), jnp.ones((2, 3)))
