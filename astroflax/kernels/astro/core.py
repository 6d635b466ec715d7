"""The two primitives of astromorphic attention for one head: ``write`` and ``read`` (Eq. 8–17).

Write mode folds tokens into the tripartite synapse's state; read mode queries it. Every
execution mode (parallel, chunk, recurrent) is assembled from these functions, so the maths
lives in one place. Shapes are per head: ``q, k: [T, m]``, ``v: [T, d]``, state ``S: [m, d]``,
``z: [m]``; a leading ``[T]`` on the state means "the state after each token" (prefix states).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.ad_checkpoint import checkpoint_name

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


def _presynaptic(k_feat: Array, pos_feat: Array | None) -> Array:
    # The Hebbian trace sees neuron-neuron and astrocyte-neuron activity side by side (Eq. 12).
    return k_feat if pos_feat is None else k_feat + pos_feat


def write(state: AstroState, k_feat: Array, v: Array, pos_feat: Array | None = None) -> AstroState:
    """Write mode (Eq. 10, 12, 13): folds ``T`` tokens into the state.

    Args:
      state: ``S [m, d]``, ``z [m]``.
      k_feat: ``[T, m]`` key rates ``φ(k)``; v: ``[T, d]``; pos_feat: ``[T, m]`` ``φ(A)`` or None.

    Returns:
      ``S + Σ_t (φ(k_t) + φ(a_t)) v_tᵀ``, ``z + Σ_t φ(k_t)``.
    """
    x = _presynaptic(k_feat, pos_feat)
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


def _outer(x: Array, v: Array) -> Array:
    # x_t v_tᵀ for every token: [T, m] x [T, d] -> [T, m, d] (elementwise, fuses with its user).
    return x[:, :, None] * v[:, None, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def sigmoid_prefix_read(S0: Array, x: Array, v: Array, q_feat: Array, m_div: float) -> Array:
    """``num_i = φ(q_i) @ σ((S0 + Σ_{t<=i} x_t v_tᵀ) / m_div)`` for a block of tokens (Eq. 11).

    The numerator of the causal read with the sigmoid on, with a hand-written backward that
    reuses the forward's ``H = σ(·)`` instead of differentiating through the prefix sums
    (autodiff transposed every ``[T, m, d]`` intermediate several times; see
    benchmarks/README.md). Every prefix is a running sum, so a later token — even a
    non-finite one — never touches an earlier row.

    Args:
      S0: ``[m, d]`` trace of the tokens before the block; x: ``[T, m]`` presynaptic rates
      ``φ(k) + φ(A)``; v: ``[T, d]``; q_feat: ``[T, m]``; m_div: the divisor of Eq. 11.

    Returns:
      ``[T, d]`` numerators (the normaliser of Eq. 15–16 is applied by the caller).
    """
    return _sigmoid_prefix_read_fwd(S0, x, v, q_feat, m_div)[0]


def _sigmoid_prefix_read_fwd(S0, x, v, q_feat, m_div):
    H = jax.nn.sigmoid((S0 + running_sum(_outer(x, v))) * (1.0 / m_div))
    numerator = jnp.einsum("tm,tmd->td", q_feat, H)
    return numerator, (x, v, q_feat, H)


def _sigmoid_prefix_read_bwd(m_div, residuals, d_numerator):
    x, v, q_feat, H = residuals
    d_q = jnp.einsum("tmd,td->tm", H, d_numerator)
    # dL/dP_i = φ(q_i) dnum_iᵀ ⊙ σ'(P_i) / m_div, with σ' = σ(1 - σ) (as jax's logistic).
    d_prefix = _outer(q_feat, d_numerator) * (H * (1 - H)) * (1.0 / m_div)
    # Token t's outer product is in every prefix i >= t: its cotangent is the suffix sum.
    d_outer = running_sum(d_prefix, reverse=True)
    d_x = jnp.einsum("tmd,td->tm", d_outer, v)
    d_v = jnp.einsum("tmd,tm->td", d_outer, x)
    return d_outer[0], d_x, d_v, d_q


sigmoid_prefix_read.defvjp(_sigmoid_prefix_read_fwd, _sigmoid_prefix_read_bwd)


#: The name (``jax.ad_checkpoint.checkpoint_name``) of :func:`causal_block`'s token-scan
#: numerators: the one value a rematerialised chunk keeps (see ``chunk.chunk_astro``).
SCAN_NUMERATOR = "astro_scan_numerator"
#: Tokens per block of :func:`sigmoid_scan_read`'s backward when it recovers states by
#: subtraction: rounding stays within a block (one chunk at the default ``chunk_size``).
SCAN_REVERSE_BLOCK = 64
#: Tokens whose states the exact backward of :func:`sigmoid_scan_read` rebuilds at once
#: (measured, benchmarks/README.md: 8 states of every pair stay in cache; 4 and 16 are slower).
SCAN_REBUILD_TOKENS = 8


def trace_stays_finite(S0_abs_max: Array, x_max: Array, v_abs_max: Array, num_tokens: int,
                       dtype) -> Array:
    """Whether every partial sum of the trace is finite with room to spare (a bool scalar).

    ``|S0 + Σ_{t<=i} x_t v_tᵀ| <= max|S0| + T · max x · max|v|`` entrywise (``x > 0``); when
    that bound is below ``finfo(dtype).max / 2**10``, no state, outer product or difference of
    the two overflows, and none is NaN (a NaN or infinite input fails the comparison). This
    is when :func:`sigmoid_scan_read`'s backward may recover states by subtraction.

    Args:
      S0_abs_max, x_max, v_abs_max: scalars ``max|S0|``, ``max x``, ``max|v|``.
      num_tokens: ``T``; dtype: the accumulation dtype.
    """
    bound = S0_abs_max + num_tokens * x_max * v_abs_max
    return bound < jnp.finfo(dtype).max / 2**10


def sigmoid_scan_read(S0: Array, x: Array, v: Array, q_feat: Array, m_div: float,
                      subtraction_ok: Array | bool | None = None) -> Array:
    """:func:`sigmoid_prefix_read` by a token-by-token scan: the same numerators, no ``[T, m, d]``.

    ``num_i = φ(q_i) @ σ((S0 + Σ_{t<=i} x_t v_tᵀ) / m_div)`` (Eq. 11). The forward carries the
    ``[m, d]`` trace through the block one token at a time (one rank-1 update, one sigmoid and
    one matrix-vector product per token, the trace in cache) and keeps only its inputs. The
    backward runs the tokens in reverse, carrying the suffix sum ``G = Σ_{i>=t} ∂L/∂P_i``,
    ``∂L/∂P_i = φ(q_i) ∂num_iᵀ ⊙ σ'(P_i) / m_div``, and needs each token's state again:

    - by subtraction (``subtraction_ok``): from the end state of each block of
      :data:`SCAN_REVERSE_BLOCK` tokens (``S0`` plus the running sum of per-block ``xᵀv``
      matmuls), ``S_{t-1} = S_t - x_t v_tᵀ``, as the Pallas kernels do; the recovered states
      carry one block's rounding, like the forward's own additions. A non-finite or
      overflowing ``x_t v_tᵀ`` cannot be subtracted back out, so this is for finite traces
      only (:func:`trace_stays_finite`).
    - otherwise exactly: rebuilt :data:`SCAN_REBUILD_TOKENS` at a time from their block's
      start by a running sum, so a token never reaches an earlier state or gradient.

    The forward is the same either way and exact whatever the values. Under ``vmap`` every
    step works on all mapped (example, head) pairs at once; on a CPU this beats
    materialising prefix states (benchmarks/README.md, "Causal astro training"), on a GPU or
    TPU ``T`` small sequential steps would not.

    Args:
      S0: ``[m, d]`` trace of the tokens before the block; x: ``[T, m]`` presynaptic rates
        ``φ(k) + φ(A)`` (> 0); v: ``[T, d]``; q_feat: ``[T, m]``; m_div: the divisor of Eq. 11.
      subtraction_ok: bool scalar choosing the backward; None decides from these arrays with
        :func:`trace_stays_finite`. Under ``vmap`` pass one flag for the whole batch (an
        unbatched scalar): a per-pair flag makes ``lax.cond`` evaluate both backwards.

    Returns:
      ``[T, d]`` numerators, equal to :func:`sigmoid_prefix_read`'s to float rounding.
    """
    if subtraction_ok is None:
        subtraction_ok = trace_stays_finite(jnp.max(jnp.abs(S0)), jnp.max(x, initial=0),
                                            jnp.max(jnp.abs(v), initial=0), x.shape[0],
                                            S0.dtype)
    return _sigmoid_scan_read(S0, x, v, q_feat, jnp.asarray(subtraction_ok, bool), m_div)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _sigmoid_scan_read(S0, x, v, q_feat, subtraction_ok, m_div):
    return _sigmoid_scan_read_fwd(S0, x, v, q_feat, subtraction_ok, m_div)[0]


def _sigmoid_scan_read_fwd(S0, x, v, q_feat, subtraction_ok, m_div):
    def one_token(S, token):
        x_t, v_t, q_t = token
        S = S + jnp.outer(x_t, v_t)
        return S, q_t @ jax.nn.sigmoid(S * (1.0 / m_div))

    _, numerator = jax.lax.scan(one_token, S0, (x, v, q_feat))
    return numerator, (S0, x, v, q_feat, subtraction_ok)


def _token_blocks(size, *arrays):
    # [T, *] arrays -> [n, size, *]; zero tokens at the end add nothing to any state, and
    # their cotangents are dropped.
    T = arrays[0].shape[0]
    n = -(-T // size)
    return tuple(jnp.pad(a, [(0, n * size - T), (0, 0)]).reshape(n, size, a.shape[-1])
                 for a in arrays)


def _unblock(arrays, T):
    # The inverse of _token_blocks: [n, size, *] -> [T, *].
    return tuple(a.reshape(-1, a.shape[-1])[:T] for a in arrays)


def _reverse_token(m_div, G, S, x_t, v_t, q_t, d_t):
    # One token of the backward, given its state S: its gradients and the suffix sum G after it.
    H = jax.nn.sigmoid(S * (1.0 / m_div))
    d_q = H @ d_t
    # Token t's outer product is in every prefix i >= t: G sums their cotangents.
    G = G + jnp.outer(q_t, d_t) * (H * (1 - H)) * (1.0 / m_div)
    return G, (G @ v_t, x_t @ G, d_q)


def _backward_by_subtraction(m_div, S0, x, v, q_feat, d_numerator):
    size = min(x.shape[0], SCAN_REVERSE_BLOCK)
    blocks = _token_blocks(size, x, v, q_feat, d_numerator)
    ends = S0 + running_sum(jnp.einsum("btm,btd->bmd", blocks[0], blocks[1]))

    def one_token(carry, token):
        G, S = carry  # S: the state after this token
        G, grads = _reverse_token(m_div, G, S, *token)
        return (G, S - jnp.outer(token[0], token[1])), grads

    def one_block(G, block):
        end, *tokens = block
        (G, _), grads = jax.lax.scan(one_token, (G, end), tuple(tokens), reverse=True)
        return G, grads

    G, grads = jax.lax.scan(one_block, jnp.zeros_like(S0), (ends, *blocks), reverse=True)
    return G, _unblock(grads, x.shape[0])


def _backward_by_rebuild(m_div, S0, x, v, q_feat, d_numerator):
    blocks = _token_blocks(SCAN_REBUILD_TOKENS, x, v, q_feat, d_numerator)
    totals = jnp.einsum("btm,btd->bmd", blocks[0], blocks[1])
    # The state before each block (exclusive: a block's own tokens are not in it).
    starts = S0 + jnp.concatenate([jnp.zeros_like(totals[:1]), running_sum(totals)[:-1]])

    def one_token(G, token):
        return _reverse_token(m_div, G, *token)

    def one_block(G, block):
        start, x_s, v_s, q_s, d_s = block
        states = start + running_sum(_outer(x_s, v_s))
        return jax.lax.scan(one_token, G, (states, x_s, v_s, q_s, d_s), reverse=True)

    G, grads = jax.lax.scan(one_block, jnp.zeros_like(S0), (starts, *blocks), reverse=True)
    return G, _unblock(grads, x.shape[0])


def _sigmoid_scan_read_bwd(m_div, residuals, d_numerator):
    S0, x, v, q_feat, subtraction_ok = residuals
    G, grads = jax.lax.cond(subtraction_ok,
                            functools.partial(_backward_by_subtraction, m_div),
                            functools.partial(_backward_by_rebuild, m_div),
                            S0, x, v, q_feat, d_numerator)
    return G, *grads, None


_sigmoid_scan_read.defvjp(_sigmoid_scan_read_fwd, _sigmoid_scan_read_bwd)


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
    x = _presynaptic(k_feat, pos_feat)
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
    calcium = _causal_calcium(state.z, q_feat, k_feat, params.alpha)
    return normalise(numerator, calcium, params.eps)


def _causal_calcium(z0: Array, q_feat: Array, k_feat: Array, alpha: float) -> Array:
    # c_i = φ(q_i)·(z0 + Σ_{t<=i} φ(k_t))**alpha (Eq. 13–15) for a block: [T].
    z = z0 + running_sum(k_feat)
    return jnp.sum(q_feat * calcium_drive(z, alpha), axis=-1)


def causal_block(state: AstroState, q_feat: Array, k_feat: Array, v: Array,
                 pos_feat: Array | None, params: ReadParams, token_scan: bool = False,
                 subtraction_ok: Array | None = None) -> tuple[Array, AstroState]:
    """Causal attention within one block of tokens that follows ``state`` (docs/model.md §4).

    Sigmoid on (Eq. 11 is nonlinear in the prefix): the block's prefix states are read one by
    one, by a token scan (:func:`sigmoid_scan_read`, ``token_scan``) or materialised as
    ``[T, m, d]`` (:func:`sigmoid_prefix_read`); the two agree to float rounding. Sigmoid
    off: the masked-score form of :func:`causal_linear_read`, ``O(T²)`` scores instead of
    ``O(T·m·d)`` states.

    Args:
      state: ``S [m, d]``, ``z [m]`` of the tokens before the block.
      q_feat, k_feat: ``[T, m]``; v: ``[T, d]``; pos_feat: ``[T, m]`` or None.
      params: read hyperparameters.
      token_scan: which of the two sigmoid paths (ignored with the sigmoid off).
      subtraction_ok: the token scan's choice of backward (see :func:`sigmoid_scan_read`).

    Returns:
      ``(out [T, d], state after the block)``.
    """
    if not params.sigmoid:
        out = causal_linear_read(state, q_feat, k_feat, v, pos_feat, params)
        return out, write(state, k_feat, v, pos_feat)
    x, v = _presynaptic(k_feat, pos_feat), v.astype(state.S.dtype)
    if token_scan:
        numerator = checkpoint_name(
            sigmoid_scan_read(state.S, x, v, q_feat, params.m_div, subtraction_ok),
            SCAN_NUMERATOR)
    else:
        numerator = sigmoid_prefix_read(state.S, x, v, q_feat, params.m_div)
    out = normalise(numerator, _causal_calcium(state.z, q_feat, k_feat, params.alpha), params.eps)
    return out, write(state, k_feat, v, pos_feat)


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
