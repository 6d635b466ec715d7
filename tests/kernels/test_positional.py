"""The astrocytic positional term equals the direct ``Mᵀ (M P Mᵀ)`` with an explicit ``P``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroflax.kernels import astro_positional, toeplitz_decay_apply
from tests.helpers import assert_close, normal


def _direct(M, decay, length):
    idx = np.arange(length)
    P = np.exp(-decay * np.abs(idx[:, None] - idx[None, :]))
    Ml = np.asarray(M, np.float64)[:, :length]
    return Ml.T @ (Ml @ P @ Ml.T)


@pytest.mark.parametrize("length", [1, 5, 64, 65, 130])
@pytest.mark.parametrize("decay", [0.05, 1.0, 30.0])
@pytest.mark.parametrize("chunk_size", [1, 16, 64])
def test_matches_explicit_toeplitz(length, decay, chunk_size):
    M = normal(length, (6, 140))
    A = astro_positional(M, decay=decay, length=length, chunk_size=chunk_size)
    assert A.shape == (length, 6)
    assert_close(A, _direct(M, decay, length), rtol=1e-12)


def test_toeplitz_apply_on_identity_rebuilds_p():
    L = 37
    P = toeplitz_decay_apply(jnp.eye(L, dtype=jnp.float64), 0.3, chunk_size=8)  # I P = P
    idx = np.arange(L)
    assert_close(P, np.exp(-0.3 * np.abs(idx[:, None] - idx[None, :])), rtol=1e-13)


def test_gradients_match_direct_formula():
    M = normal(0, (4, 50))

    def direct(M, decay):
        idx = jnp.arange(50)
        P = jnp.exp(-decay * jnp.abs(idx[:, None] - idx[None, :]).astype(jnp.float64))
        return jnp.sum(jnp.sin(M.T @ (M @ P @ M.T)))

    def fast(M, decay):
        return jnp.sum(jnp.sin(astro_positional(M, decay=decay, length=50, chunk_size=16)))

    decay = jnp.asarray(0.2, jnp.float64)
    got = jax.grad(fast, argnums=(0, 1))(M, decay)
    want = jax.grad(direct, argnums=(0, 1))(M, decay)
    assert_close(got[0], want[0], rtol=1e-11, name="dM")
    assert_close(got[1], want[1], rtol=1e-11, name="ddecay")


def test_a_shorter_length_is_a_different_window_not_a_slice():
    # D = M P Mᵀ sums over the whole window, so rows of a length-10 call differ from the first
    # 10 rows of the full window: models must compute A over T_max once and slice it
    # (docs/model.md §3).
    M = normal(1, (4, 40))
    full = astro_positional(M, decay=0.5, length=40)
    short = astro_positional(M, decay=0.5, length=10)
    assert_close(short, _direct(M, 0.5, 10), rtol=1e-12)
    assert float(jnp.max(jnp.abs(full[:10] - short))) > 1e-3 * float(jnp.max(jnp.abs(short)))


def test_memory_is_linear_in_length():
    # No [L, L] buffer: compiled temporaries grow ~linearly with the length.
    def temp_bytes(L):
        spec = jax.ShapeDtypeStruct((8, L), jnp.float32)
        fn = jax.jit(lambda M: astro_positional(M, decay=0.1, length=L))
        stats = fn.lower(spec).compile().memory_analysis()
        return stats.temp_size_in_bytes + stats.output_size_in_bytes

    small, large = temp_bytes(4096), temp_bytes(8192)
    assert large / small < 2.3, (small, large)
    assert large < 8192 * 8192 * 4 / 50  # far below one [L, L] float32 matrix
