"""Causal read with the sigmoid on, by materialising a block's prefix states ``[T, m, d]``.

The backend-neutral form of Eq. 11's causal numerator (the default off CPU): every prefix
state of the block at once by a running sum, one sigmoid over all of them, one contraction
with the queries. ``O(T·m·d)`` memory: for a chunk or a short sequence (docs/model.md §4). The
token scan of :mod:`~astroflax.kernels.astro.scan` gives the same numerators without the
``[T, m, d]`` states.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array

from astroflax.kernels.astro.core import outer_products, running_sum


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
    H = jax.nn.sigmoid((S0 + running_sum(outer_products(x, v))) * (1.0 / m_div))
    numerator = jnp.einsum("tm,tmd->td", q_feat, H)
    return numerator, (x, v, q_feat, H)


def _sigmoid_prefix_read_bwd(m_div, residuals, d_numerator):
    x, v, q_feat, H = residuals
    d_q = jnp.einsum("tmd,td->tm", H, d_numerator)
    # dL/dP_i = φ(q_i) dnum_iᵀ ⊙ σ'(P_i) / m_div, with σ' = σ(1 - σ) (as jax's logistic).
    d_prefix = outer_products(q_feat, d_numerator) * (H * (1 - H)) * (1.0 / m_div)
    # Token t's outer product is in every prefix i >= t: its cotangent is the suffix sum.
    d_outer = running_sum(d_prefix, reverse=True)
    d_x = jnp.einsum("tmd,td->tm", d_outer, v)
    d_v = jnp.einsum("tmd,tm->td", d_outer, x)
    return d_outer[0], d_x, d_v, d_q


sigmoid_prefix_read.defvjp(_sigmoid_prefix_read_fwd, _sigmoid_prefix_read_bwd)
