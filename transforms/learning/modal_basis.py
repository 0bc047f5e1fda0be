"""Eigen-decomposition of a hidden group's K x K mean Jacobian block for the
modal ES traces: M = V diag(lam) W, W = V^-1, modes ordered by angle then by
falling modulus, so a mode keeps its index from step to step.

K = 1 (a membrane alone, as snnTorch's Leaky keeps it) is its own mode and
stays real; K = 2 (a membrane with its spike, adaptation or synaptic current;
a two-state resonator) has the closed form

    lam = (a + d) / 2 +- sqrt(((a - d) / 2)^2 + b c),   v = (b, lam - a) or (lam - d, c)

in plain array operations: no LAPACK call inside the scan, and the same code
on every backend. Larger blocks use ``jnp.linalg.eig``.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

TINY = 1e-3     # |lam| below which a mode counts as real (its sign is noise)


def mode_dtype(k: int, dtype):
    """A K = 1 group's mode is real; others may rotate, so complex."""
    return jnp.dtype(dtype) if k == 1 else jnp.result_type(dtype, jnp.complex64)


def _angle(lam):
    """The ordering key: 0 for a real positive (or vanishing) mode, pi for a
    real negative one, the argument otherwise."""
    real = (lam.imag == 0) | (jnp.abs(lam) < TINY)
    return jnp.where(real, jnp.where(lam.real < -TINY, math.pi, 0.0), jnp.angle(lam))


def _general(m):
    lam, v = jnp.linalg.eig(m)
    order = jnp.lexsort((-jnp.abs(lam), _angle(lam)))
    lam, v = lam[order], v[:, order]
    return lam, v, jnp.linalg.inv(v)


def _eigvec(a, b, c, d, lam, unit):
    """An eigenvector of [[a, b], [c, d]] for lam: the longer of the two
    null-space candidates, ``unit`` where both vanish (M = lam I)."""
    p = jnp.stack([b + 0 * lam, lam - a])
    q = jnp.stack([lam - d, c + 0 * lam])
    np_, nq = jnp.sum(jnp.abs(p) ** 2), jnp.sum(jnp.abs(q) ** 2)
    v = jnp.where(np_ >= nq, p, q)
    n = jnp.maximum(np_, nq)
    scale = jnp.abs(a) + jnp.abs(b) + jnp.abs(c) + jnp.abs(d)
    none = n <= (1e-12 * scale) ** 2 + 1e-30
    return jnp.where(none, unit.astype(v.dtype), v / jnp.sqrt(jnp.where(none, 1.0, n)))


def _two(m):
    c_dtype = mode_dtype(2, m.dtype)
    a, b, c, d = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    disc = ((a - d) / 2) ** 2 + b * c
    root = jnp.sqrt(jnp.abs(disc))
    sq = jnp.where(disc >= 0, root.astype(c_dtype), 1j * root.astype(c_dtype))
    lam = jnp.stack([(a + d) / 2 + sq, (a + d) / 2 - sq])
    swap = (_angle(lam[0]) > _angle(lam[1])) | (
        (_angle(lam[0]) == _angle(lam[1])) & (jnp.abs(lam[0]) < jnp.abs(lam[1])))
    lam = jnp.where(swap, lam[::-1], lam)
    eye = jnp.eye(2, dtype=m.dtype)
    v = jnp.stack([_eigvec(a, b, c, d, lam[0], eye[0]),
                   _eigvec(a, b, c, d, lam[1], eye[1])], axis=1)
    det = v[0, 0] * v[1, 1] - v[0, 1] * v[1, 0]
    # a defective block (one repeated mode) has parallel vectors: bounded, not inf
    size = jnp.abs(det)
    phase = jnp.where(size > 0, det / jnp.where(size > 0, size, 1.0), 1.0)
    det = jnp.where(size < 1e-6, 1e-6 * phase, det)
    w = jnp.stack([jnp.stack([v[1, 1], -v[0, 1]]), jnp.stack([-v[1, 0], v[0, 0]])]) / det
    return lam, v, w


def basis(m):
    """(lam (K,), V, W = V^-1) of a real (K, K) block; real for K = 1."""
    k = m.shape[0]
    if k == 1:
        one = jnp.ones((1, 1), m.dtype)
        return m[0], one, one
    if k == 2:
        return _two(m)
    return _general(m)
