"""Batched astromorphic attention on the fused Pallas kernels (``implementation="pallas"``).

The ``O(T·m·d)`` work — the Hebbian trace, its sigmoid (Eq. 11) and the read — runs in the
kernels of :mod:`astroflax.kernels.pallas.causal` / :mod:`~astroflax.kernels.pallas.noncausal`.
The ``O(T·m)`` parts stay here in XLA, where they fuse into a few elementwise passes: the firing
rates φ (Eq. 4), padding masks, the presynaptic sum ``z`` (Eq. 13, a cumulative sum when causal),
the calcium response ``c = φ(q)·z^α`` (Eq. 14–15) and its inverse (Eq. 16). The same
:mod:`astroflax.kernels.astro.core` functions as the XLA path compute them, so the two
implementations differ only in how the trace is summed and read.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array

from astroflax.kernels.astro.core import AstroState, ReadParams, calcium_drive
from astroflax.kernels.astro.options import IMPLEMENTATIONS
from astroflax.kernels.feature_maps import apply_feature_map, elu1
from astroflax.kernels.pallas.causal import KernelConfig, causal_hebbian_read
from astroflax.kernels.pallas.noncausal import noncausal_hebbian_read


def platform_backend(interpret: bool) -> str:
    """The kernel driver for the default device: ``"tpu"`` or ``"gpu"`` (Triton).

    In interpret mode (CPU) the TPU driver runs: it is the one whose chunk-sequential grid the
    interpreter can check most directly; tests exercise the GPU driver explicitly.
    """
    platform = jax.default_backend()
    if platform == "tpu":
        return "tpu"
    if platform in ("gpu", "cuda", "rocm"):
        return "gpu"
    if not interpret:
        raise ValueError(
            f"implementation='pallas' compiles for GPU or TPU, and the default device is "
            f"{platform!r}: pass interpret=True to run the kernels in the Pallas interpreter "
            "(slow; for tests), or use implementation='xla'")
    return "tpu"


def check_pallas_arguments(implementation: str, *, interpret: bool, mode: str, dtype) -> None:
    """Clear errors for what the Pallas path does not do, before anything traces."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation: expected one of {IMPLEMENTATIONS}, got "
                         f"{implementation!r}")
    if not isinstance(interpret, bool):
        raise ValueError(f"interpret: expected True or False, got {interpret!r}")
    if implementation == "xla":
        if interpret:
            raise ValueError("interpret=True only applies to implementation='pallas'")
        return
    if mode == "recurrent":
        raise ValueError("implementation='pallas' replaces the parallel and chunk modes; "
                         "mode='recurrent' (token-by-token generation) needs implementation='xla'")
    if jnp.dtype(dtype) == jnp.float64:
        raise ValueError("implementation='pallas' accumulates in float32; float64 inputs need "
                         "implementation='xla'")


def _rates(x: Array, feature_map: str, projection: Array | None) -> Array:
    # φ of [B, H, T, n] -> [B, H, T, m]; a per-head projection [H, m, n] maps over axis 1.
    if projection is not None and projection.ndim == 3:
        return jax.vmap(lambda xh, ph: apply_feature_map(xh, feature_map, ph),
                        in_axes=(1, 0), out_axes=1)(x, projection)
    return apply_feature_map(x, feature_map, projection)


@functools.partial(jax.jit, static_argnames=("causal", "params", "feature_map", "chunk_size",
                                             "layout", "backend", "interpret", "d_tile"))
def pallas_astro_attention(q: Array, k: Array, v: Array, pos_keys: Array | None,
                           mask: Array | None, projection: Array | None,
                           initial_state: AstroState, *, causal: bool, params: ReadParams,
                           feature_map: str, chunk_size: int, layout: str, backend: str,
                           interpret: bool, d_tile: int | None = None
                           ) -> tuple[Array, AstroState]:
    """Astromorphic attention (Eq. 8–17) with the trace summed and read by a fused kernel.

    Arguments are those of :func:`astroflax.kernels.astro_attention`, already validated:
    q, k ``[B, T, H, n]`` and v ``[B, T, H, d]`` (or ``[B, H, T, *]`` for ``layout="BHTD"``),
    pos_keys ``[T_pos >= T, H, m]`` (``[H, T_pos, m]``) or None, mask ``[B, T]`` or None,
    initial_state ``S [B, H, m, d]``, ``z [B, H, m]`` in float32. ``chunk_size`` is the
    causal kernel's checkpoint interval and the non-causal kernels' token block;
    ``backend`` ``"tpu"`` or ``"gpu"``; ``d_tile`` splits the value columns across programs.

    Returns:
      ``(out, AstroState)``: out in v's dtype and layout, the state after the last token.
    """
    if layout == "BTHD":  # the kernels want each head's [T, *] rows contiguous
        q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
        if pos_keys is not None:
            pos_keys = jnp.swapaxes(pos_keys, 0, 1)
    B, H, T, _ = q.shape
    d = v.shape[-1]
    f32 = jnp.float32
    keep = jnp.ones((B, 1, T, 1), bool) if mask is None else mask[:, None, :, None]
    q_feat = _rates(q.astype(f32), feature_map, projection)
    k_feat = jnp.where(keep, _rates(k.astype(f32), feature_map, projection), 0)
    v_kept = jnp.where(keep, v.astype(f32), 0)
    x = k_feat
    if pos_keys is not None:  # the astrocyte's positional activity joins the trace (Eq. 12)
        x = x + jnp.where(keep, elu1(pos_keys[:, :T].astype(f32))[None], 0)
    m = q_feat.shape[-1]
    z0 = initial_state.z[:, :, None, :]
    z = z0 + (jnp.cumsum(k_feat, axis=2) if causal else jnp.sum(k_feat, axis=2, keepdims=True))
    calcium = jnp.sum(q_feat * calcium_drive(z, params.alpha), axis=-1, keepdims=True)
    denominator = calcium + params.eps
    # As core.normalise: a denominator <= 0 (a query that saw no real token, eps = 0) is
    # replaced by 1, and padding queries get 0, which zeroes their rows and gradients.
    inv_den = jnp.where(keep, 1.0 / jnp.where(denominator > 0, denominator, 1.0), 0.0)

    config = KernelConfig(m_div=params.m_div, sigmoid=params.sigmoid, chunk_size=chunk_size,
                          d_tile=d_tile, backend=backend, interpret=interpret)
    kernel = causal_hebbian_read if causal else noncausal_hebbian_read

    def heads(a):
        return a.reshape(B * H, *a.shape[2:])

    out, S = kernel(heads(q_feat), heads(x), heads(v_kept), heads(inv_den),
                    heads(initial_state.S.astype(f32)), config)
    out = out.reshape(B, H, T, d).astype(v.dtype)
    if layout == "BTHD":
        out = jnp.swapaxes(out, 1, 2)
    state = AstroState(S=S.reshape(B, H, m, d), z=initial_state.z + jnp.sum(k_feat, axis=2))
    return out, state
