"""Linear attention (Katharopoulos et al. 2020): astromorphic attention with the astrocyte removed.

``alpha = 1``, no sigmoid, no positional term, ``m_div = 1`` (an exact special case,
docs/model.md §2), so it reuses the astromorphic modes (parallel, chunk, recurrent) rather
than a second copy.
"""

from __future__ import annotations

from jax import Array

from astroflax.kernels.astro.api import astro_attention
from astroflax.kernels.astro.core import AstroState


def linear_attention(q: Array, k: Array, v: Array, *, causal: bool = False,
                     mask: Array | None = None, feature_map: str = "elu1",
                     projection: Array | None = None, mode: str = "auto", chunk_size: int = 64,
                     eps: float = 1e-6, initial_state: AstroState | None = None,
                     return_state: bool = False) -> Array | tuple[Array, AstroState]:
    """``out_i = Σ_t (φ(q_i)·φ(k_t)) v_t / (Σ_t φ(q_i)·φ(k_t) + eps)``, batched.

    Args:
      q, k: ``[B, T, H, n]``; v: ``[B, T, H, d]``; mask: ``[B, T]`` bool (True = real token).
      Other arguments as in :func:`astroflax.kernels.astro_attention`.

    Returns:
      ``[B, T, H, d]`` in v's dtype (and the state with ``return_state``).
    """
    return astro_attention(q, k, v, causal=causal, alpha=1.0, sigmoid=False, m_div=1.0,
                           pos_keys=None, mask=mask, feature_map=feature_map,
                           projection=projection, mode=mode, chunk_size=chunk_size, eps=eps,
                           initial_state=initial_state, return_state=return_state)


__all__ = ["linear_attention"]
