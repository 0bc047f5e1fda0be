"""Heaviside spike functions with surrogate gradients.

The forward pass of every spike function is the Heaviside step ``(x > 0)``
cast to ``x.dtype``; the backward pass replaces its zero/undefined derivative
by a smooth pseudo-derivative. Each surrogate is one module-level
``jax.custom_jvp`` function whose hyperparameters are ``nondiff_argnums``, so
all instances with the same hyperparameters share one function and a traced
step shows a single ``custom_jvp_call`` per spike.

``x`` is the distance to threshold, usually normalised, e.g.
``(v - v_th) / (v_th - v_reset)``.
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp

__all__ = [
    "Surrogate", "Sigmoid", "Arctan", "Triangle", "SuperSpike", "Gaussian",
    "heaviside", "sigmoid_spike", "arctan_spike", "triangle_spike",
    "superspike_spike", "gaussian_spike",
]


def _step(x):
    return (x > 0).astype(x.dtype)


def heaviside(x):
    """Heaviside step ``(x > 0)`` with a zero gradient everywhere."""
    x = jnp.asarray(x)
    return jax.lax.stop_gradient(_step(x))


# --------------------------------------------------------------------------
# Pseudo-derivatives (closed form)
# --------------------------------------------------------------------------

def _sigmoid_grad(x, alpha):
    sg = jax.nn.sigmoid(alpha * x)
    return alpha * sg * (1.0 - sg)


def _arctan_grad(x, alpha):
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)


def _triangle_grad(x, width, height):
    return height * jnp.maximum(0.0, 1.0 - jnp.abs(x) / width)


def _superspike_grad(x, beta):
    return 1.0 / (beta * jnp.abs(x) + 1.0) ** 2


def _gaussian_grad(x, sigma):
    return jnp.exp(-0.5 * (x / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))


# --------------------------------------------------------------------------
# custom_jvp spike functions (hyperparameters are nondiff_argnums)
# --------------------------------------------------------------------------

@partial(jax.custom_jvp, nondiff_argnums=(1,))
def sigmoid_spike(x, alpha):
    """Heaviside forward; derivative ``alpha*sig(alpha x)*(1-sig(alpha x))``."""
    return _step(x)


@sigmoid_spike.defjvp
def _sigmoid_spike_jvp(alpha, primals, tangents):
    (x,), (dx,) = primals, tangents
    return _step(x), (_sigmoid_grad(x, alpha) * dx).astype(x.dtype)


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def arctan_spike(x, alpha):
    """Heaviside forward; derivative ``(alpha/2) / (1 + (pi/2 alpha x)^2)``."""
    return _step(x)


@arctan_spike.defjvp
def _arctan_spike_jvp(alpha, primals, tangents):
    (x,), (dx,) = primals, tangents
    return _step(x), (_arctan_grad(x, alpha) * dx).astype(x.dtype)


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def triangle_spike(x, width, height):
    """Heaviside forward; derivative ``height * max(0, 1 - |x|/width)``."""
    return _step(x)


@triangle_spike.defjvp
def _triangle_spike_jvp(width, height, primals, tangents):
    (x,), (dx,) = primals, tangents
    return _step(x), (_triangle_grad(x, width, height) * dx).astype(x.dtype)


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def superspike_spike(x, beta):
    """Heaviside forward; derivative ``1 / (beta |x| + 1)^2`` (Zenke & Ganguli)."""
    return _step(x)


@superspike_spike.defjvp
def _superspike_spike_jvp(beta, primals, tangents):
    (x,), (dx,) = primals, tangents
    return _step(x), (_superspike_grad(x, beta) * dx).astype(x.dtype)


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def gaussian_spike(x, sigma):
    """Heaviside forward; derivative is the N(0, sigma^2) density."""
    return _step(x)


@gaussian_spike.defjvp
def _gaussian_spike_jvp(sigma, primals, tangents):
    (x,), (dx,) = primals, tangents
    return _step(x), (_gaussian_grad(x, sigma) * dx).astype(x.dtype)


# --------------------------------------------------------------------------
# Callable, hashable surrogate objects
# --------------------------------------------------------------------------

class Surrogate:
    """Base class: ``spike_fn(x)`` is ``(x > 0)`` with pseudo-derivative
    ``spike_fn.grad(x)``. Subclasses are frozen dataclasses (hashable, so they
    can be static attributes of nnx modules)."""

    def __call__(self, x):
        raise NotImplementedError

    def grad(self, x):
        """The pseudo-derivative d spike / d x used in the backward pass."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Sigmoid(Surrogate):
    """Heaviside with derivative ``alpha * sig(alpha x) * (1 - sig(alpha x))``."""
    alpha: float = 4.0

    def __call__(self, x):
        return sigmoid_spike(jnp.asarray(x), float(self.alpha))

    def grad(self, x):
        return _sigmoid_grad(jnp.asarray(x), float(self.alpha))


@dataclasses.dataclass(frozen=True)
class Arctan(Surrogate):
    """Heaviside with derivative ``(alpha/2) / (1 + (pi/2 * alpha * x)^2)``."""
    alpha: float = 2.0

    def __call__(self, x):
        return arctan_spike(jnp.asarray(x), float(self.alpha))

    def grad(self, x):
        return _arctan_grad(jnp.asarray(x), float(self.alpha))


@dataclasses.dataclass(frozen=True)
class Triangle(Surrogate):
    """Heaviside with derivative ``height * max(0, 1 - |x| / width)``."""
    width: float = 1.0
    height: float = 1.0

    def __call__(self, x):
        return triangle_spike(jnp.asarray(x), float(self.width), float(self.height))

    def grad(self, x):
        return _triangle_grad(jnp.asarray(x), float(self.width), float(self.height))


@dataclasses.dataclass(frozen=True)
class SuperSpike(Surrogate):
    """Heaviside with derivative ``1 / (beta * |x| + 1)^2``."""
    beta: float = 10.0

    def __call__(self, x):
        return superspike_spike(jnp.asarray(x), float(self.beta))

    def grad(self, x):
        return _superspike_grad(jnp.asarray(x), float(self.beta))


@dataclasses.dataclass(frozen=True)
class Gaussian(Surrogate):
    """Heaviside with derivative ``exp(-x^2 / (2 sigma^2)) / (sigma sqrt(2 pi))``."""
    sigma: float = 0.5

    def __call__(self, x):
        return gaussian_spike(jnp.asarray(x), float(self.sigma))

    def grad(self, x):
        return _gaussian_grad(jnp.asarray(x), float(self.sigma))
