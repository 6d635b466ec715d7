"""Chunked causal mode for one head (docs/model.md §4): ``lax.scan`` over chunks of ``C`` tokens.

Each chunk reads the state carried from earlier chunks plus its own tokens, then hands its
final state on. With the sigmoid off, a chunk uses the masked ``[C, C]`` score matmul. With it
on (Eq. 11 is nonlinear in the prefix, so the linear-attention matmul trick does not apply),
it either runs a token scan over the chunk whose backward needs only its inputs
(``token_scan``, the CPU default: ``scan.sigmoid_scan_read``; the chunk keeps its numerators
and recomputes the rest), or materialises its ``C`` prefix states ``[C, m, d]``
(``prefix.sigmoid_prefix_read``; the chunk body is rematerialised in the backward pass).
Memory is ``O(T·(m + d))`` plus the carried states at chunk boundaries, ``(T/C)·m·d``, plus
per chunk ``O(8·m·d)`` (token scan) or ``O(C·m·d)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from astroflax.kernels.astro.block import SCAN_NUMERATOR, causal_block
from astroflax.kernels.astro.core import (
    AstroState,
    ReadParams,
    accumulation_dtype,
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
          feature_map: str, chunk_size: int, token_scan: bool = False,
          subtraction_ok: Array | None = None) -> tuple[Array, AstroState]:
    """Causal astromorphic attention of one head, chunk by chunk.

    The arguments (shapes, ``[T, d]`` output, returned state) are those of
    :func:`astroflax.kernels.astro.parallel.parallel_astro` with ``causal=True``, plus
    ``chunk_size``: ``C``; ``T`` is padded up to a multiple of it with masked tokens;
    ``token_scan``: the sigmoid path's strategy (see the module docstring), and
    ``subtraction_ok``: the token scan's backward (``scan.sigmoid_scan_read``).
    """
    T = q.shape[0]
    dtype = accumulation_dtype(v.dtype)
    num_chunks = -(-T // chunk_size)
    if mask is None and num_chunks * chunk_size != T:
        mask = jnp.ones((T,), bool)  # so the padding tokens are masked out of the state
    chunks = tuple(_split_chunks(x, num_chunks, chunk_size) for x in (q, k, v, pos_keys, mask))

    def one_chunk(state: AstroState, xs) -> tuple[AstroState, Array]:
        q_c, k_c, v_c, pos_c, mask_c = xs
        q_feat, k_feat, v_c, pos_feat = featurize(q_c, k_c, v_c, pos_c, mask_c,
                                                  feature_map=feature_map,
                                                  projection=projection, dtype=dtype)
        out, new_state = causal_block(state, q_feat, k_feat, v_c, pos_feat, params, token_scan,
                                      subtraction_ok)
        return new_state, mask_queries(out, mask_c)

    if token_scan and params.sigmoid:
        # Keep each chunk's numerators and recompute the rest in the backward: the O(C·m)
        # firing rates and normaliser, not the token scan (its backward needs only its
        # inputs). Less memory and faster than storing everything (benchmarks/README.md).
        policy = jax.checkpoint_policies.save_only_these_names(SCAN_NUMERATOR)
        one_chunk = jax.checkpoint(one_chunk, policy=policy)
    else:
        # [C, C] scores or [C, m, d] prefix states per chunk: recomputed, never stored.
        one_chunk = jax.checkpoint(one_chunk)

    final_state, outs = jax.lax.scan(one_chunk, initial_state, chunks)
    out = outs.reshape(num_chunks * chunk_size, -1)[:T]
    return out.astype(v.dtype), final_state
