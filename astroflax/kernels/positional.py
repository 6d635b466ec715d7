"""The astrocytic positional term (paper Eq. 12; docs/model.md §3) in O(L·m²) time, O(L·m) memory.

Per head: ``P_ij = exp(-decay·|i - j|)`` (the paper says only "distance-based"; this is the
form of the authors' follow-up RMAAT), ``D = M P Mᵀ [m, m]``, ``A = Mᵀ D [L, m]`` (the paper
ties ``W_rel = Mᵀ``). ``P`` is never built: along each row of ``M``, ``M P`` is a forward plus
a backward first-order linear recurrence, ``F_i = x_i + r F_{i-1}``, ``B_i = x_i + r B_{i+1}``,
``M P = F + B - M`` with ``r = exp(-decay)``. Each recurrence runs chunk-wise: a ``[c, c]``
decay matmul inside each chunk and a ``lax.scan`` of ``[m]`` carries across chunks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array

from astroflax.kernels._validate import check_positive, check_positive_int, check_rank, fail
from astroflax.kernels.astro.core import accumulation_dtype


def _decaying_prefix_sum(x: Array, decay: Array, chunk_size: int) -> Array:
    """``F[:, i] = Σ_{j<=i} exp(-decay·(i - j)) x[:, j]`` along the last axis of ``x [m, L]``.

    Works on ``Mᵀ``'s transpose, ``M [m, L]`` as stored, so the in-chunk step is one plain
    ``[m·n, c] @ [c, c]`` matmul with no layout copies.
    """
    m, L = x.shape
    c = min(chunk_size, L)
    num_chunks = -(-L // c)
    xc = jnp.pad(x, ((0, 0), (0, num_chunks * c - L))).reshape(m, num_chunks, c)
    steps = jnp.arange(c, dtype=x.dtype)
    lag = steps[:, None] - steps[None, :]  # lag[i, j] = i - j
    # exp of a clamped lag, then where: no overflow from negative lags, exact zeros above.
    within = jnp.where(lag >= 0, jnp.exp(-decay * jnp.maximum(lag, 0)), 0)  # [c, c]
    local = jnp.einsum("mnj,ij->mni", xc, within)  # prefix sums that restart at each chunk
    into_chunk = jnp.exp(-decay * (steps + 1))  # weight of the incoming carry at row i: r^(i+1)
    across = jnp.exp(-decay * c)

    def carry_step(carry: Array, chunk_total: Array) -> tuple[Array, Array]:
        return across * carry + chunk_total, carry

    # carries[n] = F at the end of chunk n-1 (zero for the first chunk).
    _, carries = jax.lax.scan(carry_step, jnp.zeros((m,), x.dtype), local[:, :, -1].T)
    out = local + carries.T[:, :, None] * into_chunk
    return out.reshape(m, num_chunks * c)[:, :L]


def toeplitz_decay_apply(x: Array, decay: Array | float, *, chunk_size: int = 32) -> Array:
    """``x P`` with ``P_ij = exp(-decay·|i - j|)`` (symmetric), for ``x [m, L]``, without ``P``."""
    forward = _decaying_prefix_sum(x, decay, chunk_size)
    backward = _decaying_prefix_sum(x[:, ::-1], decay, chunk_size)[:, ::-1]
    return forward + backward - x


def astro_positional(M: Array, *, decay: Array | float, length: int,
                     chunk_size: int = 32) -> Array:
    """Raw astrocytic positional activity ``A = Mᵀ (M P Mᵀ)`` of one head (Eq. 12).

    Args:
      M: ``[m, T_max]`` learnable astrocyte weights; its first ``length`` columns are used.
      decay: ``s > 0`` in ``P_ij = exp(-s·|i - j|)`` (scalar; may be a traced parameter).
      length: ``L <= T_max``, the number of positions to produce. Models use ``T_max`` and slice
        rows, so a token's activity does not depend on the current sequence length.
      chunk_size: chunk of the internal recurrences (a speed knob; results do not depend on it).

    Returns:
      ``A [length, m]`` in M's dtype (float32 or wider inside); feed it to
      ``astro_attention(pos_keys=...)``, which applies elu+1.

    Raises:
      ValueError: bad rank, ``length`` outside ``1..T_max``, or ``decay <= 0``.
    """
    _m, t_max = check_rank("M", M, 2, "[m, T_max]")
    if not isinstance(length, int) or not 1 <= length <= t_max:
        fail("length", f"an int in 1..{t_max} (M's T_max)", repr(length))
    check_positive("decay", decay)
    check_positive_int("chunk_size", chunk_size)
    dtype = accumulation_dtype(M.dtype)
    return _astro_positional(M, jnp.asarray(decay, dtype), length=length,
                             chunk_size=chunk_size).astype(M.dtype)


@functools.partial(jax.jit, static_argnames=("length", "chunk_size"))
def _astro_positional(M: Array, decay: Array, *, length: int, chunk_size: int) -> Array:
    m_l = M[:, :length].astype(decay.dtype)  # [m, L]
    mp = toeplitz_decay_apply(m_l, decay, chunk_size=chunk_size)  # M P, [m, L]
    d_matrix = jnp.einsum("ml,nl->mn", mp, m_l)  # D = M P Mᵀ, [m, m]
    return jnp.einsum("ml,mn->ln", m_l, d_matrix)  # A = Mᵀ D, [L, m]
