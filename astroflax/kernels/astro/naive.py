"""Direct O(T²) references for astromorphic attention (docs/model.md §2 and §4), for tests only.

Written from the formula, independently of :mod:`core`: for every query ``i`` it builds the
visible set ``S(i)`` as an explicit ``[T, T]`` matrix and the full Hebbian trace ``[T, m, d]``,

    out_i = (φ(q_i) @ σ(Σ_{t∈S(i)} (φ(k_t) + φ(a_t)) v_tᵀ / m_div))
            / (φ(q_i)·(Σ_{t∈S(i)} φ(k_t))^α + eps)

Memory ``O(T·m·d)`` and time ``O(T²·m·d)``: use at test sizes only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array


def _elu_plus_one(x: Array) -> Array:
    return jax.nn.elu(x) + 1.0


def naive_astro_attention_head(q_feat: Array, k_feat: Array, v: Array, pos_feat: Array | None,
                               mask: Array | None, *, causal: bool, alpha: float, sigmoid: bool,
                               m_div: float, eps: float) -> Array:
    """Reference for one head from already-featurised rates.

    Args:
      q_feat, k_feat: ``[T, m]`` rates ``φ(q)``, ``φ(k)``; v: ``[T, d]``;
      pos_feat: ``[T, m]`` ``φ(A)`` or None; mask: ``[T]`` bool or None.

    Returns:
      ``[T, d]``; rows of padding queries are zero.
    """
    T = q_feat.shape[0]
    visible = jnp.ones((T, T), bool) if mask is None else jnp.broadcast_to(mask[None, :], (T, T))
    if causal:
        visible = visible & (jnp.arange(T)[None, :] <= jnp.arange(T)[:, None])
    w = visible.astype(q_feat.dtype)  # w[i, t] = 1 iff t ∈ S(i)
    x = k_feat if pos_feat is None else k_feat + pos_feat
    # Values of invisible tokens are replaced, not multiplied by 0, so inf/NaN cannot leak.
    trace = jnp.einsum("it,itm,itd->imd", w, jnp.where(visible[:, :, None], x[None], 0.0),
                       jnp.where(visible[:, :, None], v[None], 0.0)) / m_div
    H = jax.nn.sigmoid(trace) if sigmoid else trace
    presyn = w @ k_feat  # [T, m]
    # 0**alpha is 0, but its derivative is infinite: a query behind left padding has
    # presyn = 0, so the power takes a stand-in base there (its value is not used).
    has_input = presyn > 0
    g = jnp.where(has_input, jnp.where(has_input, presyn, 1.0) ** alpha, 0.0)
    calcium = jnp.sum(q_feat * g, axis=-1) + eps
    calcium = jnp.where(calcium > 0, calcium, 1.0)  # only padding queries with eps = 0
    out = jnp.einsum("im,imd->id", q_feat, H) / calcium[:, None]
    if mask is not None:
        out = jnp.where(mask[:, None], out, 0.0)
    return out


def naive_astro_attention(q: Array, k: Array, v: Array, *, causal: bool = False,
                          alpha: float = 0.25, sigmoid: bool = True, m_div: float | None = None,
                          pos_keys: Array | None = None, mask: Array | None = None,
                          eps: float = 1e-6, features: Callable[[Array], Array] | None = None
                          ) -> Array:
    """Batched reference with the elu+1 feature map (or ``features`` if given).

    Args:
      q, k: ``[B, T, H, n]``; v: ``[B, T, H, d]``; pos_keys: ``[T_pos >= T, H, m]`` raw ``A``;
      mask: ``[B, T]`` bool. ``features``: optional ``x [T, n] -> [T, m]`` map shared by heads.

    Returns:
      ``[B, T, H, d]`` in the inputs' float dtype.
    """
    T = q.shape[1]
    if pos_keys is not None:
        pos_keys = pos_keys[:T]
    feat = _elu_plus_one if features is None else features
    m = feat(q[0, :, 0]).shape[-1]
    return _naive_batched(q, k, v, pos_keys, mask, feat, causal=causal, alpha=alpha,
                          sigmoid=sigmoid, m_div=float(m if m_div is None else m_div), eps=eps)


@functools.partial(jax.jit, static_argnames=("feat", "causal", "alpha", "sigmoid", "m_div", "eps"))
def _naive_batched(q, k, v, pos_keys, mask, feat, *, causal, alpha, sigmoid, m_div, eps):
    def one_head(q, k, v, pos, mask):
        return naive_astro_attention_head(
            feat(q), feat(k), v, None if pos is None else _elu_plus_one(pos), mask,
            causal=causal, alpha=alpha, sigmoid=sigmoid, m_div=m_div, eps=eps)

    over_heads = jax.vmap(one_head, in_axes=(1, 1, 1, 1, None), out_axes=1)
    return jax.vmap(over_heads, in_axes=(0, 0, 0, None, 0))(q, k, v, pos_keys, mask)
