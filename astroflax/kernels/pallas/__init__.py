"""Fused Pallas kernels (GPU: Triton, TPU: Mosaic) for astromorphic attention.

Selected with ``astro_attention(..., implementation="pallas")`` (``interpret=True`` on CPU).
:mod:`.causal` and :mod:`.noncausal` hold the kernels and their ``custom_vjp`` backward passes;
:mod:`.attention` the batched entry that computes the ``O(T·m)`` parts in XLA around them.
"""

from astroflax.kernels.pallas.attention import IMPLEMENTATIONS, pallas_astro_attention
from astroflax.kernels.pallas.causal import KernelConfig, causal_hebbian_read
from astroflax.kernels.pallas.noncausal import noncausal_hebbian_read

__all__ = [
    "IMPLEMENTATIONS",
    "KernelConfig",
    "causal_hebbian_read",
    "noncausal_hebbian_read",
    "pallas_astro_attention",
]
