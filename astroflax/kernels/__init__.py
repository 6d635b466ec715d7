"""Pure-JAX attention kernels (no Flax): astromorphic, linear, softmax; feature maps; positions.

Import the kernel alone::

    from astroflax.kernels import astro_attention, astro_positional
    out = astro_attention(q, k, v, causal=True, alpha=0.25, pos_keys=A)   # [B, T, H, d]

Per-head primitives (``write``, ``read``, ``astro_step``, ``AstroState``) live in
:mod:`astroflax.kernels.astro`; the O(T²) references in ``astro.naive`` and ``linear.naive``.
"""

from astroflax.kernels.astro import AstroState, ReadParams, astro_attention, astro_step
from astroflax.kernels.feature_maps import (
    FEATURE_MAPS,
    draw_random_projection,
    elu1,
    positive_random_features,
)
from astroflax.kernels.linear import linear_attention
from astroflax.kernels.positional import astro_positional, toeplitz_decay_apply
from astroflax.kernels.softmax import softmax_attention

__all__ = [
    "FEATURE_MAPS",
    "AstroState",
    "ReadParams",
    "astro_attention",
    "astro_positional",
    "astro_step",
    "draw_random_projection",
    "elu1",
    "linear_attention",
    "positive_random_features",
    "softmax_attention",
    "toeplitz_decay_apply",
]
