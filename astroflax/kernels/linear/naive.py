"""Direct O(T²) linear attention (Katharopoulos et al. 2020, Eq. 6), for tests only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array


def naive_linear_attention(q: Array, k: Array, v: Array, *, causal: bool = False,
                           mask: Array | None = None) -> Array:
    """``out_i = Σ_t (φ(q_i)·φ(k_t)) v_t / Σ_t φ(q_i)·φ(k_t)`` with ``φ = elu + 1``.

    Args:
      q, k: ``[B, T, H, n]``; v: ``[B, T, H, d]``; mask: ``[B, T]`` bool or None.

    Returns:
      ``[B, T, H, d]``; padding queries give zeros.
    """
    fq, fk = jax.nn.elu(q) + 1.0, jax.nn.elu(k) + 1.0
    scores = jnp.einsum("bihn,bthn->bhit", fq, fk)  # [B, H, T, T]
    T = q.shape[1]
    visible = jnp.ones((T, T), bool)
    if causal:
        visible = jnp.tril(visible)
    visible = visible[None, None]
    if mask is not None:
        visible = visible & mask[:, None, None, :]
    scores = jnp.where(visible, scores, 0.0)
    out = jnp.einsum("bhit,bthd->bihd", scores, v) / jnp.sum(scores, axis=-1).transpose(0, 2, 1)[
        ..., None]
    if mask is not None:
        out = jnp.where(mask[:, :, None, None], out, 0.0)
    return out
