"""Softmax attention (the vanilla Transformer baseline) over ``jax.nn.dot_product_attention``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from astroflax.kernels._validate import (
    check_arrays,
    check_mask,
    check_rank,
    check_same_dtype,
    fail,
    shape_of,
)


def softmax_attention(q: Array, k: Array, v: Array, *, causal: bool = False,
                      mask: Array | None = None, scale: float | None = None,
                      implementation: str | None = None) -> Array:
    """``softmax(q kᵀ · scale) v`` per head, in the kernels' ``[B, T, H, *]`` layout.

    Args:
      q, k: ``[B, T, H, n]``; v: ``[B, T, H, d]``; ``d`` may differ from ``n``. q, k and v
        must be arrays of one dtype (no silent promotion; lists are refused).
      causal: query ``i`` attends to ``t <= i``.
      mask: ``[B, T]`` bool key-padding mask (True = real token; a nested list is accepted);
        padding queries output zeros, as in the astromorphic kernels.
      scale: logit scale; None means ``1/sqrt(n)``.
      implementation: passed to ``jax.nn.dot_product_attention`` (None, "xla" or "cudnn").

    Returns:
      ``[B, T, H, d]`` in q's dtype.

    Raises:
      ValueError: on a bad argument, naming it and what was expected.
    """
    check_arrays(("q", "k", "v"), (q, k, v))
    check_same_dtype(("q", "k", "v"), (q, k, v))
    B, T, H, n = check_rank("q", q, 4, "[batch, seq, heads, n]")
    if shape_of(k) != (B, T, H, n):
        fail("k", f"the shape of q {(B, T, H, n)}", shape_of(k))
    if len(shape_of(v)) != 4 or shape_of(v)[:3] != (B, T, H):
        fail("v", f"shape [{B}, {T}, {H}, d]", shape_of(v))
    check_mask(mask, B, T)
    mask = None if mask is None else jnp.asarray(mask)
    d = v.shape[-1]
    if scale is None:
        scale = 1.0 / float(n) ** 0.5
    if d != n:
        # jax.nn.dot_product_attention wants one head width for q, k and v. Zero columns
        # change neither q·k (q and k padded alike, scale fixed above) nor the first d output
        # columns (v padded), so padding the narrower side to max(n, d) is exact.
        width = max(n, d)
        q, k, v = (jnp.pad(x, [(0, 0)] * 3 + [(0, width - x.shape[-1])]) for x in (q, k, v))
    key_mask = None if mask is None else mask[:, None, None, :]  # [B, 1, 1, T] -> [B, H, Tq, Tk]
    # jax.nn.dot_product_attention promotes its logits with float32 internally, which strict
    # dtype promotion rejects for float64 and bfloat16 inputs; standard promotion is what it
    # was written for, and leaves the output dtype as the inputs'.
    with jax.numpy_dtype_promotion("standard"):
        out = jax.nn.dot_product_attention(q, k, v, mask=key_mask, is_causal=causal,
                                           scale=scale, implementation=implementation)
    out = out[..., :d]
    return out if mask is None else jnp.where(mask[:, :, None, None], out, 0).astype(out.dtype)


__all__ = ["softmax_attention"]
