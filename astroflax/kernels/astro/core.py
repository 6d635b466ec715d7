"""The state of astromorphic attention for one head, and its ``write`` and ``read`` (Eq. 8–17).

Write mode folds tokens into the tripartite synapse's state; read mode queries it. Every
execution mode (parallel, chunk, recurrent) is assembled from these functions, so the maths
lives in one place. Shapes are per head: ``q, k: [T, m]``, ``v: [T, d]``, state ``S: [m, d]``,
``z: [m]``; a leading ``[T]`` on the state means "the state after each token" (prefix states).

Here also: the running sums every causal path uses, and the causal read with the sigmoid off
(:func:`causal_linear_read`). The causal reads with the sigmoid on are in
:mod:`~astroflax.kernels.astro.scan` (token scan) and :mod:`~astroflax.kernels.astro.prefix`
(materialised prefix states); :mod:`~astroflax.kernels.astro.block` chooses among the three.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from astroflax.kernels.feature_maps import apply_feature_map, elu1


class AstroState(NamedTuple):
    """What the tripartite synapse remembers after write mode, for one head (or batched).

    Attributes:
      S: ``[..., m, d]`` Hebbian trace ``Σ_t (φ(k_t) + φ(a_t)) v_tᵀ`` (Eq. 10 and the astrocytic
        term of Eq. 12), kept *before* the ``1/m_div`` of Eq. 11 so that states add.
      z: ``[..., m]`` presynaptic sum ``Σ_t φ(k_t)`` (Eq. 13).
    """

    S: Array
    z: Array


@dataclasses.dataclass(frozen=True)
class ReadParams:
    """Static hyperparameters of read mode (hashable, so they can be ``jit`` static arguments).

    Attributes:
      alpha: exponent of the astrocyte's Ca²⁺ nonlinearity ``g = z**alpha`` (Eq. 14), > 0.
      sigmoid: apply the logistic sigmoid of Eq. 11 to the scaled trace (else identity).
      m_div: the paper's scaling parameter m of Eq. 11 (a divisor, not the hidden width), > 0.
      eps: guard added to the calcium response ``c_i`` before inverting it (Eq. 16), >= 0.
    """

    alpha: float = 0.25
    sigmoid: bool = True
    m_div: float = 1.0
    eps: float = 1e-6


def accumulation_dtype(dtype) -> jnp.dtype:
    """float32, or float64 when inputs are float64: S, z and c are never summed in bfloat16."""
    # Not jnp.promote_types: it refuses float64 vs float32 under strict dtype promotion.
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def empty_state(m: int, d: int, dtype=jnp.float32) -> AstroState:
    """The empty synapse: ``S = 0 [m, d]``, ``z = 0 [m]``."""
    return AstroState(S=jnp.zeros((m, d), dtype), z=jnp.zeros((m,), dtype))


def featurize(q: Array, k: Array, v: Array, pos_keys: Array | None, mask: Array | None, *,
              feature_map: str, projection: Array | None,
              dtype) -> tuple[Array, Array, Array, Array | None]:
    """Firing rates of the hidden neurons and of the astrocyte (Eq. 4 and Sec. 3), masked.

    Args:
      q, k: ``[T, n]`` raw queries and keys; v: ``[T, d]`` values.
      pos_keys: ``[T, m]`` raw astrocytic positional activity ``A`` (Eq. 12), or None.
      mask: ``[T]`` bool, True = real token, or None. Padding tokens get zero key rates,
        positional rates and values, so they add nothing to the state (even a non-finite
        value at a padding position cannot leak in as ``0 · inf``).
      feature_map: ``"elu1"`` or ``"random_features"``; the positional term always uses elu+1
        because it models the astrocyte's own activity, not the hidden neurons.
      projection: ``[m, n]`` random-feature matrix for ``"random_features"``.
      dtype: accumulation dtype; every output is cast to it.

    Returns:
      ``(φ(q) [T, m], φ(k) [T, m], v [T, d], φ(A) [T, m] or None)``.
    """
    q_feat = apply_feature_map(q.astype(dtype), feature_map, projection)
    k_feat = apply_feature_map(k.astype(dtype), feature_map, projection)
    v = v.astype(dtype)
    pos_feat = None if pos_keys is None else elu1(pos_keys.astype(dtype))
    if mask is not None:
        keep = mask[:, None]
        k_feat = jnp.where(keep, k_feat, 0)
        v = jnp.where(keep, v, 0)
        if pos_feat is not None:
            pos_feat = jnp.where(keep, pos_feat, 0)
    return q_feat, k_feat, v, pos_feat


def presynaptic(k_feat: Array, pos_feat: Array | None) -> Array:
    """The rates the Hebbian trace multiplies into ``v``: ``φ(k) + φ(A)`` (``[T, m]``).

    The trace sees neuron-neuron and astrocyte-neuron activity side by side (Eq. 12).
    """
    return k_feat if pos_feat is None else k_feat + pos_feat


def write(state: AstroState, k_feat: Array, v: Array, pos_feat: Array | None = None) -> AstroState:
    """Write mode (Eq. 10, 12, 13): folds ``T`` tokens into the state.

    Args:
      state: ``S [m, d]``, ``z [m]``.
      k_feat: ``[T, m]`` key rates ``φ(k)``; v: ``[T, d]``; pos_feat: ``[T, m]`` ``φ(A)`` or None.

    Returns:
      ``S + Σ_t (φ(k_t) + φ(a_t)) v_tᵀ``, ``z + Σ_t φ(k_t)``.
    """
    x = presynaptic(k_feat, pos_feat)
    S = state.S + jnp.einsum("tm,td->md", x, v.astype(state.S.dtype))
    return AstroState(S=S, z=state.z + jnp.sum(k_feat, axis=0))


#: Block length of :func:`running_sum`'s inner prefix sums (measured, benchmarks/README.md).
RUNNING_SUM_BLOCK = 8


def running_sum(x: Array, *, reverse: bool = False, block: int = RUNNING_SUM_BLOCK) -> Array:
    """Inclusive prefix sums along axis 0 (suffix sums with ``reverse``), blocked.

    ``lax.cumsum`` on XLA:CPU is a reduce-window whose cost grows with the length squared; here
    it runs within blocks of ``block`` rows, and the block totals are summed the same way
    (recursively) and added to the next blocks. Only additions, never a 0/1 mask multiplied
    in: row ``i`` is a sum of rows ``<= i`` alone (``>= i`` with ``reverse``), so a non-finite
    row changes no row before it.

    Args:
      x: ``[T, ...]``.

    Returns:
      ``[T, ...]``, row ``i`` = ``Σ_{t<=i} x_t`` (``Σ_{t>=i} x_t`` with ``reverse``).
    """
    length = x.shape[0]
    if length <= block:
        return jax.lax.cumsum(x, axis=0, reverse=reverse)
    n = -(-length // block)
    # Zero rows are appended at the end (after every real row, whichever the direction,
    # since reverse sums of real rows start from the last real row).
    padded = jnp.pad(x, [(0, n * block - length)] + [(0, 0)] * (x.ndim - 1))
    blocks = jax.lax.cumsum(padded.reshape(n, block, *x.shape[1:]), axis=1, reverse=reverse)
    totals = blocks[:, 0] if reverse else blocks[:, -1]
    before = running_sum(totals, reverse=reverse, block=block)   # inclusive over blocks
    zero = jnp.zeros_like(totals[:1])
    # Exclusive: block j adds the totals of the blocks strictly before it (after, reversed).
    offsets = (jnp.concatenate([before[1:], zero]) if reverse
               else jnp.concatenate([zero, before[:-1]]))
    out = blocks + offsets[:, None]
    return out.reshape(n * block, *x.shape[1:])[:length]


def outer_products(x: Array, v: Array) -> Array:
    """Every token's write ``x_t v_tᵀ``: ``[T, m] × [T, d] -> [T, m, d]``.

    Elementwise, so it fuses with its consumer (a running sum, a contraction); the
    materialised prefix read and the token scan's exact backward both build states from it.
    """
    return x[:, :, None] * v[:, None, :]


def hebbian_weights(S: Array, params: ReadParams) -> Array:
    """``H = σ(S / m_div)`` (Eq. 11), or ``S / m_div`` with the sigmoid off. Any shape."""
    scaled = S * (1.0 / params.m_div)
    return jax.nn.sigmoid(scaled) if params.sigmoid else scaled


def calcium_drive(z: Array, alpha: float) -> Array:
    """``g = z ** alpha`` elementwise (Eq. 14), with a gradient that stays finite at ``z = 0``.

    ``z = 0`` only where no real token has been written yet (a padded prefix); its power's
    derivative is infinite there, so the base is replaced before the power (double ``where``).
    The power is ``exp(alpha · log z)``: XLA:CPU evaluates ``z ** alpha`` by one scalar library
    call per element, about 3× slower than its vectorised exp and log (benchmarks/README.md);
    the two agree to float rounding.
    """
    if alpha == 1:
        return z
    positive = z > 0
    return jnp.where(positive, jnp.exp(alpha * jnp.log(jnp.where(positive, z, 1))), 0)


def normalise(numerator: Array, calcium: Array, eps: float) -> Array:
    """``out_i = P_i · numerator_i``, ``P_i = 1 / (c_i + eps)`` (Eq. 16–17, without the residual).

    ``c_i + eps = 0`` only for a query that has seen no real token with ``eps = 0`` (a padding
    query behind left padding); its row is set to 0 by the caller, and the denominator is
    replaced by 1 there so that neither the value nor the gradient is 0/0.

    Args:
      numerator: ``[T, d]`` ``φ(q_i) @ H``; calcium: ``[T]`` ``c_i = φ(q_i)·g`` (Eq. 15).
    """
    denominator = calcium + eps
    return numerator / jnp.where(denominator > 0, denominator, 1)[:, None]


def read(state: AstroState, q_feat: Array, params: ReadParams) -> Array:
    """Read mode (Eq. 11, 14–17): every query reads the state.

    Args:
      state: one shared state (``S [m, d]``, ``z [m]``) read by all queries, or per-query prefix
        states (``S [T, m, d]``, ``z [T, m]``).
      q_feat: ``[T, m]`` query rates ``φ(q)``.

    Returns:
      ``[T, d]`` outputs ``(φ(q_i) @ H_i) / (φ(q_i)·g_i + eps)``.
    """
    H = hebbian_weights(state.S, params)
    g = calcium_drive(state.z, params.alpha)
    if state.S.ndim == 2:
        numerator = q_feat @ H
        calcium = q_feat @ g
    else:
        numerator = jnp.einsum("tm,tmd->td", q_feat, H)
        calcium = jnp.sum(q_feat * g, axis=-1)
    return normalise(numerator, calcium, params.eps)


def causal_linear_read(state: AstroState, q_feat: Array, k_feat: Array, v: Array,
                       pos_feat: Array | None, params: ReadParams) -> Array:
    """Causal read with the sigmoid off, without materialising prefix states.

    ``H_i = (S + Σ_{t<=i} x_t v_tᵀ) / m_div`` is linear in the prefix, so its contraction with
    ``φ(q_i)`` is a masked ``[T, T]`` score matmul plus a read of the carried state; only the
    normaliser needs the prefix sums of ``φ(k)`` (``[T, m]``), because of the power in Eq. 14.

    Args:
      state: carried ``S [m, d]``, ``z [m]`` from earlier tokens.
      q_feat, k_feat: ``[T, m]``; v: ``[T, d]``; pos_feat: ``[T, m]`` or None.

    Returns:
      ``[T, d]``, equal to the direct formula with the sigmoid off,
      ``out_i = (φ(q_i) @ H_i) / (φ(q_i)·(z + Σ_{t<=i} φ(k_t))**alpha + eps)``.
    """
    if params.sigmoid:
        raise ValueError("causal_linear_read needs params.sigmoid=False; with the sigmoid on use "
                         "causal_block (a token scan or materialised prefix states)")
    x = presynaptic(k_feat, pos_feat)
    T = q_feat.shape[0]
    visible = jnp.arange(T)[:, None] >= jnp.arange(T)[None, :]
    # `where`, not a 0/1 multiply, so a future token's cotangent is an exact zero.
    scores = jnp.where(visible, q_feat @ x.T, 0)
    v = v.astype(state.S.dtype)
    # The score matmul multiplies a later token's value by an exact 0, and 0 · inf = NaN. So
    # non-finite values are taken out of the matmul and added back by a running sum, where
    # they reach exactly the rows t <= i that see them (scores are > 0, so the sign of an
    # infinity is kept, as in the direct formula). For finite values this adds exact zeros.
    finite = jnp.isfinite(v)
    numerator = (q_feat @ state.S + scores @ jnp.where(finite, v, 0)
                 + running_sum(jnp.where(finite, 0, v))) * (1.0 / params.m_div)
    calcium = causal_calcium(state.z, q_feat, k_feat, params.alpha)
    return normalise(numerator, calcium, params.eps)


def causal_calcium(z0: Array, q_feat: Array, k_feat: Array, alpha: float) -> Array:
    """``c_i = φ(q_i)·(z0 + Σ_{t<=i} φ(k_t))**alpha`` (Eq. 13–15) for a block of tokens: ``[T]``."""
    z = z0 + running_sum(k_feat)
    return jnp.sum(q_feat * calcium_drive(z, alpha), axis=-1)


def mask_queries(out: Array, mask: Array | None) -> Array:
    """Zeros the outputs of padding queries (``out [T, d]``, ``mask [T]``): nothing was asked."""
    return out if mask is None else jnp.where(mask[:, None], out, 0)


def astro_step(state: AstroState, q: Array, k: Array, v: Array, pos_key: Array | None = None, *,
               params: ReadParams, feature_map: str = "elu1", projection: Array | None = None,
               mask: Array | None = None) -> tuple[Array, AstroState]:
    """One token of causal astromorphic attention: write it, then read with its query. O(m·d).

    Args:
      state: ``S [m, d]``, ``z [m]`` after the previous tokens (float32 or float64).
      q, k: ``[n]`` raw query and key; v: ``[d]``; pos_key: ``[m]`` raw positional activity or None.
      params: read hyperparameters. feature_map, projection: as in :func:`featurize`.
      mask: scalar bool; a padding token (False) leaves the state unchanged and outputs zeros.

    Returns:
      ``(out [d] in v's dtype, new state)``.
    """
    token_mask = None if mask is None else jnp.reshape(mask, (1,))
    q_feat, k_feat, v_masked, pos_feat = featurize(
        q[None], k[None], v[None], None if pos_key is None else pos_key[None], token_mask,
        feature_map=feature_map, projection=projection, dtype=state.S.dtype)
    new_state = write(state, k_feat, v_masked, pos_feat)
    out = mask_queries(read(new_state, q_feat, params), token_mask)
    return out[0].astype(v.dtype), new_state
