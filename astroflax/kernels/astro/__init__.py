"""Astromorphic attention: per-head primitives, execution modes, references and the batched API."""

from astroflax.kernels.astro.api import MODES, astro_attention, resolve_mode
from astroflax.kernels.astro.block import causal_block
from astroflax.kernels.astro.chunk import chunk_astro
from astroflax.kernels.astro.core import (
    AstroState,
    ReadParams,
    astro_step,
    calcium_drive,
    causal_linear_read,
    empty_state,
    featurize,
    hebbian_weights,
    normalise,
    read,
    running_sum,
    write,
)
from astroflax.kernels.astro.parallel import parallel_astro
from astroflax.kernels.astro.prefix import sigmoid_prefix_read
from astroflax.kernels.astro.recurrent import recurrent_astro
from astroflax.kernels.astro.scan import sigmoid_scan_read, trace_stays_finite

__all__ = [
    "MODES",
    "AstroState",
    "ReadParams",
    "astro_attention",
    "astro_step",
    "calcium_drive",
    "causal_block",
    "causal_linear_read",
    "chunk_astro",
    "empty_state",
    "featurize",
    "hebbian_weights",
    "normalise",
    "parallel_astro",
    "read",
    "recurrent_astro",
    "resolve_mode",
    "running_sum",
    "sigmoid_prefix_read",
    "sigmoid_scan_read",
    "trace_stays_finite",
    "write",
]
