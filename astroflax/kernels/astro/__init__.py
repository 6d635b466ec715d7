"""Astromorphic attention: per-head primitives, execution modes, references and the batched API."""

from astroflax.kernels.astro.api import MODES, astro_attention, resolve_mode
from astroflax.kernels.astro.chunk import chunk
from astroflax.kernels.astro.core import (
    AstroState,
    ReadParams,
    astro_step,
    calcium_drive,
    causal_block,
    causal_linear_read,
    featurize,
    hebbian_weights,
    init_state,
    normalise,
    prefix_states,
    read,
    write,
)
from astroflax.kernels.astro.parallel import parallel
from astroflax.kernels.astro.recurrent import recurrent

__all__ = [
    "MODES",
    "AstroState",
    "ReadParams",
    "astro_attention",
    "astro_step",
    "calcium_drive",
    "causal_block",
    "causal_linear_read",
    "chunk",
    "featurize",
    "hebbian_weights",
    "init_state",
    "normalise",
    "parallel",
    "prefix_states",
    "read",
    "recurrent",
    "resolve_mode",
    "write",
]
