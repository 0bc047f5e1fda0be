"""Surrogate spike functions: Heaviside forward, closed-form pseudo-derivatives."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainscale.nn import surrogate as sg

XS = np.linspace(-3.0, 3.0, 61).astype(np.float32)


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


CLOSED_FORM = [
    (sg.Sigmoid(alpha=4.0), lambda x: 4.0 * _np_sigmoid(4.0 * x) * (1 - _np_sigmoid(4.0 * x))),
    (sg.Sigmoid(alpha=1.5), lambda x: 1.5 * _np_sigmoid(1.5 * x) * (1 - _np_sigmoid(1.5 * x))),
    (sg.Arctan(alpha=2.0), lambda x: 1.0 / (1.0 + (math.pi * x) ** 2)),
    (sg.Arctan(alpha=3.0), lambda x: 1.5 / (1.0 + (1.5 * math.pi * x) ** 2)),
    (sg.Triangle(width=1.0, height=1.0), lambda x: np.clip(1.0 - np.abs(x), 0.0, None)),
    (sg.Triangle(width=0.5, height=2.0), lambda x: 2.0 * np.clip(1.0 - 2.0 * np.abs(x), 0.0, None)),
    (sg.SuperSpike(beta=10.0), lambda x: 1.0 / (10.0 * np.abs(x) + 1.0) ** 2),
    (sg.Gaussian(sigma=0.5), lambda x: np.exp(-2.0 * x ** 2) / (0.5 * np.sqrt(2 * np.pi))),
    (sg.Gaussian(sigma=1.0), lambda x: np.exp(-0.5 * x ** 2) / np.sqrt(2 * np.pi)),
]
IDS = [repr(f) for f, _ in CLOSED_FORM]


@pytest.mark.parametrize("fn", [f for f, _ in CLOSED_FORM] + [sg.heaviside], ids=IDS + ["heaviside"])
def test_forward_is_heaviside(fn):
    x = jnp.asarray(XS)
    y = np.asarray(fn(x))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, (XS > 0).astype(np.float32))
    assert float(fn(jnp.float32(0.0))) == 0.0


@pytest.mark.parametrize("fn,dfn", CLOSED_FORM, ids=IDS)
def test_gradient_matches_closed_form(fn, dfn):
    g = jax.vmap(jax.grad(lambda x: fn(x)))(jnp.asarray(XS))
    np.testing.assert_allclose(np.asarray(g), dfn(XS.astype(np.float64)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fn.grad(jnp.asarray(XS))), dfn(XS.astype(np.float64)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn,dfn", CLOSED_FORM, ids=IDS)
def test_chain_rule_scales_gradient(fn, dfn):
    # d/dx spike((x - 1) / 2) = dfn((x - 1) / 2) / 2
    g = jax.grad(lambda x: jnp.sum(fn((x - 1.0) / 2.0) * 3.0))(jnp.asarray(XS))
    np.testing.assert_allclose(np.asarray(g), 1.5 * dfn((XS.astype(np.float64) - 1.0) / 2.0),
                               rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(x=st.floats(-5, 5, width=32), alpha=st.sampled_from([0.5, 1.0, 4.0, 10.0]))
def test_sigmoid_gradient_property(x, alpha):
    g = float(jax.grad(sg.Sigmoid(alpha))(jnp.float32(x)))
    s = _np_sigmoid(alpha * np.float64(x))
    assert g == pytest.approx(alpha * s * (1 - s), rel=1e-4, abs=1e-6)


def test_heaviside_has_zero_gradient():
    g = jax.grad(lambda x: jnp.sum(sg.heaviside(x)))(jnp.asarray(XS))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_jaxpr_shows_one_custom_jvp_call_and_instances_share_it():
    a, b = sg.Sigmoid(4.0), sg.Sigmoid(4.0)
    assert a == b and hash(a) == hash(b)
    jaxpr = jax.make_jaxpr(lambda x: a(x) + b(x))(jnp.ones(3))
    calls = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "custom_jvp_call"]
    assert len(calls) == 2
    text = str(jaxpr)
    assert text.count("name=sigmoid_spike") == 2 and text.count("jvp=_sigmoid_spike_jvp") == 2
    # hyperparameters are static (nondiff_argnums): the call takes only x
    assert all(len(e.invars) == 1 for e in calls)
    assert sg.Sigmoid(4.0) != sg.Sigmoid(2.0)


@pytest.mark.parametrize("fn,dfn", CLOSED_FORM[::2], ids=IDS[::2])
def test_jit_and_vmap(fn, dfn):
    x = jnp.asarray(XS).reshape(61, 1) * jnp.ones((1, 4))
    f = jax.jit(jax.vmap(jax.grad(lambda v: jnp.sum(fn(v)))))
    np.testing.assert_allclose(np.asarray(f(x))[:, 0], dfn(XS.astype(np.float64)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(fn))(x))[:, 0], XS > 0)
