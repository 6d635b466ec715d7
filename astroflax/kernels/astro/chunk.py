"""Chunked causal mode for one head (docs/model.md §4): ``lax.scan`` over chunks of ``C`` tokens.

Each chunk reads the state carried from earlier chunks plus its own tokens, then hands its
final state on. With the sigmoid on, the chunk materialises its ``C`` prefix states
``[C, m, d]`` (the sigmoid of Eq. 11 is nonlinear in the prefix, so the linear-attention matmul
trick does not apply); with it off, it uses the masked ``[C, C]`` score matmul. The chunk body is
rematerialised in the backward pass, so memory is ``O(C·m·d + T·(m + d))`` — plus the carried
states at chunk boundaries, ``(T/C)·m·d``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from astroflax.kernels.astro.core import (
    AstroState,
    ReadParams,
    accumulation_dtype,
    causal_block,
    featurize,
    mask_queries,
)


def _split_chunks(x: Array | None, num_chunks: int, chunk_size: int) -> Array | None:
    # Pads the sequence axis with zeros to num_chunks * chunk_size, then folds it into chunks.
    if x is None:
        return None
    pad = num_chunks * chunk_size - x.shape[0]
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape(num_chunks, chunk_size, *x.shape[1:])


def chunk_astro(q: Array, k: Array, v: Array, pos_keys: Array | None, mask: Array | None,
          projection: Array | None, initial_state: AstroState, *, params: ReadParams,
          feature_map: str, chunk_size: int) -> tuple[Array, AstroState]:
    """Causal astromorphic attention of one head, chunk by chunk.

    The arguments (shapes, ``[T, d]`` output, returned state) are those of
    :func:`astroflax.kernels.astro.parallel.parallel_astro` with ``causal=True``, plus
    ``chunk_size``: ``C``; ``T`` is padded up to a multiple of it with masked tokens.
    """
    T = q.shape[0]
    dtype = accumulation_dtype(v.dtype)
    num_chunks = -(-T // chunk_size)
    if mask is None and num_chunks * chunk_size != T:
        mask = jnp.ones((T,), bool)  # so the padding tokens are masked out of the state
    chunks = tuple(_split_chunks(x, num_chunks, chunk_size) for x in (q, k, v, pos_keys, mask))

    @jax.checkpoint
    def one_chunk(state: AstroState, xs) -> tuple[AstroState, Array]:
        q_c, k_c, v_c, pos_c, mask_c = xs
        q_feat, k_feat, v_c, pos_feat = featurize(q_c, k_c, v_c, pos_c, mask_c,
                                                  feature_map=feature_map,
                                                  projection=projection, dtype=dtype)
        out, new_state = causal_block(state, q_feat, k_feat, v_c, pos_feat, params)
        return new_state, mask_queries(out, mask_c)

    final_state, outs = jax.lax.scan(one_chunk, initial_state, chunks)
    out = outs.reshape(num_chunks * chunk_size, -1)[:T]
    return out.astype(v.dtype), final_state
