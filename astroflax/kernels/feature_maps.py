"""Feature maps φ: the hidden neurons' firing rates (paper Eq. 4) and Kozachkov's random features.

Every map is positive, which the astromorphic read needs: the calcium response
``c_i = φ(q_i)·g`` (Eq. 15) must be > 0 to be inverted (Eq. 16).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array

FEATURE_MAPS = ("elu1", "random_features")


def elu1(x: Array) -> Array:
    """``φ(x) = elu(x) + 1`` (paper Eq. 4), elementwise; any shape; > 0 everywhere."""
    # where(x > 0, x + 1, exp(x)) is elu(x) + 1 in one fused pass, without the -1/+1 round trip.
    return jnp.where(x > 0, x + 1, jnp.exp(jnp.minimum(x, 0)))


def positive_random_features(x: Array, projection: Array) -> Array:
    """Performer FAVOR+ positive random features (Choromanski et al. 2021; Kozachkov et al. 2023).

    ``φ(x) = exp(W x' - |x'|²/2) / sqrt(M)`` with ``x' = x · n^(-1/4)``, so that
    ``E[φ(q)·φ(k)] = exp(q·k / sqrt(n))``: the softmax kernel of scaled dot-product attention.
    These are Kozachkov's hidden neurons: M random "cells" whose rates approximate softmax.

    Args:
      x: ``[..., n]`` queries or keys.
      projection: ``W [M, n]``, rows drawn from N(0, I) (see :func:`draw_random_projection`).

    Returns:
      ``[..., M]`` features, all > 0.
    """
    n = x.shape[-1]
    xs = x * (n**-0.25)
    proj = jnp.einsum("...n,Mn->...M", xs, projection.astype(xs.dtype))
    sq = 0.5 * jnp.sum(xs * xs, axis=-1, keepdims=True)
    return jnp.exp(proj - sq) * (projection.shape[0] ** -0.5)


def draw_random_projection(key: Array, num_features: int, dim: int, *, orthogonal: bool = True,
                           dtype=jnp.float32) -> Array:
    """Draws ``W [num_features, dim]`` for :func:`positive_random_features`.

    ``orthogonal=True`` uses Performer's orthogonal random features: blocks of ``dim`` orthogonal
    rows, rescaled to the norms of Gaussian rows (chi distribution), which lowers the estimator's
    variance while keeping it unbiased.
    """
    if not orthogonal:
        return jax.random.normal(key, (num_features, dim), dtype)
    num_blocks = math.ceil(num_features / dim)
    block_key, norm_key = jax.random.split(key)
    work = jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32
    gaussians = jax.random.normal(block_key, (num_blocks, dim, dim), work)
    q, r = jnp.linalg.qr(gaussians)  # [blocks, dim, dim], orthonormal columns
    # Householder QR fixes the signs of R's diagonal, which biases Q's columns; flipping them
    # by sign(diag R) makes Q Haar-distributed (Mezzadri 2007), so the estimator stays unbiased.
    q = q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    rows = jnp.swapaxes(q, 1, 2).reshape(num_blocks * dim, dim)[:num_features]
    norms = jnp.linalg.norm(jax.random.normal(norm_key, (num_features, dim), work), axis=1)
    return (rows * norms[:, None]).astype(dtype)


def apply_feature_map(x: Array, name: str, projection: Array | None) -> Array:
    """Applies the named feature map (``"elu1"`` or ``"random_features"``) to ``x [..., n]``."""
    if name == "elu1":
        return elu1(x)
    if name == "random_features":
        assert projection is not None  # validated by the public API
        return positive_random_features(x, projection)
    raise ValueError(f"feature_map must be one of {FEATURE_MAPS}, got {name!r}")
