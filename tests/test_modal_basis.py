"""The closed-form modal bases (K = 1, 2) against LAPACK's eigendecomposition:
same decays in the same order, same mode projectors V[:, m] W[m, :], and an
exact reconstruction, on real, rotating, scalar, defective-free and
near-vanishing blocks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transforms.learning.modal_basis import _general, basis

BLOCKS = [
    [[0.9, 0.1], [0.0, 0.8]],          # LIF + current synapse: two real modes
    [[0.8, 0.1], [0.0, 0.9]],          # the same, larger mode second on the diagonal
    [[0.95, -0.3], [0.3, 0.95]],       # a damped rotation: a conjugate pair
    [[0.5, 0.0], [0.0, 0.5]],          # lam I: any basis
    [[-0.7, 0.2], [0.1, 0.6]],         # a negative and a positive mode
    [[0.9, -0.002], [0.3, -0.01]],     # a mode near zero
    [[0.97, 0.0], [0.02, 0.0]],        # ALIF after a reset: one mode exactly zero
    [[0.0, 0.0], [0.0, 0.0]],          # a silent group
]


def _projectors(v, w):
    return np.einsum("im,mj->mij", np.asarray(v), np.asarray(w))


@pytest.mark.parametrize("block", BLOCKS + [np.random.default_rng(s).normal(size=(2, 2)) / 2
                                            for s in range(20)])
def test_two_state_blocks_match_lapack(block):
    m = jnp.asarray(block, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    lam, v, w = jax.jit(basis)(m)
    ref_lam, ref_v, ref_w = _general(m)
    np.testing.assert_allclose(lam, ref_lam, atol=2e-6)
    np.testing.assert_allclose(v @ jnp.diag(lam) @ w, m, atol=2e-5)
    np.testing.assert_allclose(_projectors(v, w), _projectors(ref_v, ref_w), atol=2e-4)


def test_one_state_block_is_its_own_real_mode():
    lam, v, w = basis(jnp.array([[0.93]], jnp.float32))
    assert lam.dtype == jnp.float32 and v.dtype == jnp.float32
    np.testing.assert_array_equal(lam, np.float32([0.93]))
    np.testing.assert_array_equal(v @ w, [[1.0]])


def test_defective_block_stays_finite():
    lam, v, w = basis(jnp.array([[0.9, 1.0], [0.0, 0.9]], jnp.float32))
    np.testing.assert_allclose(lam, [0.9, 0.9], atol=1e-6)
    assert np.all(np.isfinite(np.asarray(w)))


def test_batched_under_vmap_inside_a_scan():
    blocks = jnp.asarray(np.stack([np.asarray(b, np.float32) for b in BLOCKS]))

    def body(c, m):
        lam, v, w = jax.vmap(basis)(m)
        return c, jnp.einsum("bim,bm,bmj->bij", v, lam, w).real
    _, out = jax.lax.scan(body, 0, blocks[None].repeat(3, 0))
    np.testing.assert_allclose(out[-1], blocks, atol=2e-5)
