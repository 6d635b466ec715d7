"""Causal read with the sigmoid on, by a token scan with a hand-written backward (the CPU path).

The same numerators as :func:`~astroflax.kernels.astro.prefix.sigmoid_prefix_read`, with the
``[m, d]`` trace carried token by token instead of ``[T, m, d]`` prefix states; the backward
recovers each token's state by subtraction when :func:`trace_stays_finite` allows it, and
rebuilds it exactly otherwise.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array

from astroflax.kernels.astro.core import outer_products, running_sum

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
    """``sigmoid_prefix_read`` by a token-by-token scan: the same numerators, no ``[T, m, d]``.

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
      ``[T, d]`` numerators, equal to
      :func:`~astroflax.kernels.astro.prefix.sigmoid_prefix_read`'s to float rounding.
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
        states = start + running_sum(outer_products(x_s, v_s))
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
