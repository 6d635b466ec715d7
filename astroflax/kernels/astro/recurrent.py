"""Recurrent causal mode for one head: ``lax.scan`` of :func:`astro_step`, token by token.

O(m·d) state and work per token; the reference for generation, where tokens arrive one by one.
"""

from __future__ import annotations

import functools

import jax
from jax import Array

from astroflax.kernels.astro.core import AstroState, ReadParams, astro_step


def recurrent_astro(q: Array, k: Array, v: Array, pos_keys: Array | None, mask: Array | None,
              projection: Array | None, initial_state: AstroState, *, params: ReadParams,
              feature_map: str) -> tuple[Array, AstroState]:
    """Causal astromorphic attention of one head by scanning :func:`astro_step`.

    The arguments (shapes, ``[T, d]`` output, returned state) are those of
    :func:`astroflax.kernels.astro.parallel.parallel_astro` with ``causal=True``.
    """
    step = functools.partial(astro_step, params=params, feature_map=feature_map,
                             projection=projection)

    def one_token(state: AstroState, xs) -> tuple[AstroState, Array]:
        q_t, k_t, v_t, pos_t, mask_t = xs
        out, new_state = step(state, q_t, k_t, v_t, pos_t, mask=mask_t)
        return new_state, out

    final_state, out = jax.lax.scan(one_token, initial_state, (q, k, v, pos_keys, mask))
    return out, final_state
