"""Parallel mode for one head: all tokens at once (Eq. 8–17 in matrix form).

Non-causal: one write of every token, one read by every query — two ``[T, m] × [T, d]``
matmuls. Causal: the state after each token, either by the masked-score form (sigmoid off,
``O(T²)``) or, sigmoid on, by a token scan (``token_scan``, the CPU default) or by
materialising all ``T`` prefix states (``O(T·m·d)`` memory — for short sequences; long causal
sequences belong to :mod:`astroflax.kernels.astro.chunk`).
"""

from __future__ import annotations

from jax import Array

from astroflax.kernels.astro.block import causal_block
from astroflax.kernels.astro.core import (
    AstroState,
    ReadParams,
    accumulation_dtype,
    featurize,
    mask_queries,
    read,
    write,
)


def parallel_astro(q: Array, k: Array, v: Array, pos_keys: Array | None, mask: Array | None,
             projection: Array | None, initial_state: AstroState, *, causal: bool,
             params: ReadParams, feature_map: str, token_scan: bool = False,
             subtraction_ok: Array | None = None) -> tuple[Array, AstroState]:
    """Astromorphic attention of one head over a whole sequence.

    Args:
      q, k: ``[T, n]``; v: ``[T, d]``; pos_keys: ``[T, m]`` raw ``A`` or None.
      mask: ``[T]`` bool (True = real token) or None.
      projection: ``[m, n]`` for random features, else None.
      initial_state: ``S [m, d]``, ``z [m]`` of earlier tokens (zeros for a fresh sequence).
      causal: query ``i`` sees tokens ``t <= i`` (docs/model.md §4) instead of all tokens.
      params: read hyperparameters. feature_map: ``"elu1"`` or ``"random_features"``.
      token_scan: causal sigmoid path by :func:`~astroflax.kernels.astro.scan.sigmoid_scan_read`
        instead of :func:`~astroflax.kernels.astro.prefix.sigmoid_prefix_read`, whose backward
        ``subtraction_ok`` chooses.

    Returns:
      ``(out [T, d] in v's dtype, state after the last token)``.
    """
    dtype = accumulation_dtype(v.dtype)
    q_feat, k_feat, v_masked, pos_feat = featurize(q, k, v, pos_keys, mask,
                                                   feature_map=feature_map,
                                                   projection=projection, dtype=dtype)
    if causal:
        out, state = causal_block(initial_state, q_feat, k_feat, v_masked, pos_feat, params,
                                  token_scan, subtraction_ok)
    else:
        state = write(initial_state, k_feat, v_masked, pos_feat)
        out = read(state, q_feat, params)
    return mask_queries(out, mask).astype(v.dtype), state
