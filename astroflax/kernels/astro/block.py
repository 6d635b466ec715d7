"""Causal attention within one block of tokens: the read strategy for the block, chosen here.

Sigmoid off: :func:`~astroflax.kernels.astro.core.causal_linear_read` (masked ``[T, T]``
scores). Sigmoid on: :func:`~astroflax.kernels.astro.scan.sigmoid_scan_read` (token scan) or
:func:`~astroflax.kernels.astro.prefix.sigmoid_prefix_read` (materialised prefix states). The
parallel and chunk modes call :func:`causal_block` for a whole sequence or for each chunk.
"""

from __future__ import annotations

from jax import Array
from jax.ad_checkpoint import checkpoint_name

from astroflax.kernels.astro.core import (
    AstroState,
    ReadParams,
    causal_calcium,
    causal_linear_read,
    normalise,
    presynaptic,
    write,
)
from astroflax.kernels.astro.prefix import sigmoid_prefix_read
from astroflax.kernels.astro.scan import sigmoid_scan_read

#: The name (``jax.ad_checkpoint.checkpoint_name``) of :func:`causal_block`'s token-scan
#: numerators: the one value a rematerialised chunk keeps (see ``chunk.chunk_astro``).
SCAN_NUMERATOR = "astro_scan_numerator"


def causal_block(state: AstroState, q_feat: Array, k_feat: Array, v: Array,
                 pos_feat: Array | None, params: ReadParams, token_scan: bool = False,
                 subtraction_ok: Array | None = None) -> tuple[Array, AstroState]:
    """Causal attention within one block of tokens that follows ``state`` (docs/model.md §4).

    Sigmoid on (Eq. 11 is nonlinear in the prefix): the block's prefix states are read one by
    one, by a token scan (``scan.sigmoid_scan_read``, ``token_scan``) or materialised as
    ``[T, m, d]`` (``prefix.sigmoid_prefix_read``); the two agree to float rounding. Sigmoid
    off: the masked-score form of ``core.causal_linear_read``, ``O(T²)`` scores instead of
    ``O(T·m·d)`` states.

    Args:
      state: ``S [m, d]``, ``z [m]`` of the tokens before the block.
      q_feat, k_feat: ``[T, m]``; v: ``[T, d]``; pos_feat: ``[T, m]`` or None.
      params: read hyperparameters.
      token_scan: which of the two sigmoid paths (ignored with the sigmoid off).
      subtraction_ok: the token scan's choice of backward (see ``scan.sigmoid_scan_read``).

    Returns:
      ``(out [T, d], state after the block)``.
    """
    if not params.sigmoid:
        out = causal_linear_read(state, q_feat, k_feat, v, pos_feat, params)
        return out, write(state, k_feat, v, pos_feat)
    x, v = presynaptic(k_feat, pos_feat), v.astype(state.S.dtype)
    if token_scan:
        numerator = checkpoint_name(
            sigmoid_scan_read(state.S, x, v, q_feat, params.m_div, subtraction_ok),
            SCAN_NUMERATOR)
    else:
        numerator = sigmoid_prefix_read(state.S, x, v, q_feat, params.m_div)
    out = normalise(numerator, causal_calcium(state.z, q_feat, k_feat, params.alpha), params.eps)
    return out, write(state, k_feat, v, pos_feat)

