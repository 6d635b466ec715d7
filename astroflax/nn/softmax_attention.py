"""The Transformer's attention layer: :class:`SoftmaxAttention`, decoding with a KV cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from astroflax.kernels import softmax_attention
from astroflax.nn.attention_base import ProjectedAttention, prefill_start
from astroflax.nn.spec import VARIANTS

__all__ = ["KVCache", "SoftmaxAttention"]


class KVCache(NamedTuple):
    """Decoding state of the softmax layer: keys and values of every position up to ``T_max``.

    Attributes:
      k: ``[B, T_max, H, m]``; v: ``[B, T_max, H, d]``; position: ``[]`` int32 tokens seen.
    """

    k: Array
    v: Array
    position: Array


class SoftmaxAttention(ProjectedAttention):
    """Multi-head softmax attention (the Transformer baseline): ``x [B, T, D] -> [B, T, D]``.

    Decoding keeps a KV cache of ``T_max`` positions (O(T_max) per token per head).
    """

    def __init__(self, features: int, num_heads: int, *, max_len: int, causal: bool = False,
                 kernel: Callable[..., Any] | None = None, qk_head_dim: int | None = None,
                 v_head_dim: int | None = None, use_bias: bool = True, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        """Builds the layer (arguments as :class:`AstroAttention`).

        ``kernel`` replaces :func:`astroflax.kernels.softmax_attention` on whole sequences.
        """
        super().__init__(features, num_heads, max_len=max_len, causal=causal,
                         qk_head_dim=qk_head_dim, v_head_dim=v_head_dim, use_bias=use_bias,
                         dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.spec, self.kernel = VARIANTS["softmax"], kernel

    variant = property(lambda self: self.spec.name)

    def _softmax(self, q: Array, k: Array, v: Array, *, mask: Array | None) -> Array:
        fn = self.kernel or softmax_attention
        return fn(q, k, v, causal=self.causal, mask=mask)

    def __call__(self, x: Array, *, mask: Array | None = None,
                 return_calcium: bool = False) -> Array | tuple[Array, None]:
        """``x [B, T, D]``, ``mask [B, T]`` -> ``[B, T, D]`` (calcium: None, no astrocyte)."""
        self._check_length(x.shape[1])
        out = self.out(self._softmax(*self._qkv(x), mask=mask))
        return (out, None) if return_calcium else out

    def init_decode_state(self, batch_size: int) -> KVCache:
        """An empty KV cache of ``T_max`` positions for ``batch_size`` sequences."""
        self._require_causal("init_decode_state")
        dt = self.dtype or self.param_dtype
        H = self.num_heads
        return KVCache(k=jnp.zeros((batch_size, self.max_len, H, self.m), dt),
                       v=jnp.zeros((batch_size, self.max_len, H, self.d), dt),
                       position=jnp.zeros((), jnp.int32))

    def prefill(self, x: Array, state: KVCache | None = None) -> tuple[Array, KVCache]:
        """Causal attention over ``x [B, P, D]``, from the start or continuing a cache.

        Without a state: the whole-sequence kernel (or the replacement ``kernel``) and a fresh
        cache. With one (from :meth:`init_decode_state`, :meth:`prefill` or :meth:`step`),
        through the cache as :meth:`step` does (the replacement ``kernel`` is not used): the
        tokens sit at positions ``p .. p + P - 1`` (``p = state.position``); their keys and
        values are written there and query ``p + i`` attends over cached positions
        ``0 .. p + i``, so ``prefill(x[:, :a])`` then ``prefill(x[:, a:], state)`` gives the
        outputs and the cache of ``prefill(x)`` (to rounding).

        Args:
          x: ``[B, P, D]``, ``P >= 1``.
          state: None (position 0) or this layer's :class:`KVCache`.

        Returns:
          ``(y [B, P, D], cache)`` ready for :meth:`step` at position ``p + P``.

        Raises:
          ValueError: a non-causal layer, a state of another layer kind, or ``p + P > max_len``
            (see :func:`astroflax.nn.attention_base.prefill_start`; a traced position is not
            checked).
        """
        self._require_causal("prefill")
        B, P, _ = x.shape
        self._check_length(P)
        prefill_start(state, KVCache, P, self.max_len)
        q, k, v = self._qkv(x)
        if state is not None:
            return self._attend_cached(q, k, v, state)
        y = self._softmax(q, k, v, mask=None)
        cache = self.init_decode_state(B)
        return self.out(y), KVCache(k=cache.k.at[:, :P].set(k.astype(cache.k.dtype)),
                                    v=cache.v.at[:, :P].set(v.astype(cache.v.dtype)),
                                    position=jnp.asarray(P, jnp.int32))

    def step(self, x_t: Array, state: KVCache) -> tuple[Array, KVCache]:
        """One token ``x_t [B, D]`` at ``state.position`` -> ``(y_t [B, D], cache)``.

        Positions past ``max_len - 1`` are not checked here (traced);
        :meth:`astroflax.models.AstroLM.generate` checks the length up front.
        """
        self._require_causal("step")
        y, cache = self._attend_cached(*self._qkv(x_t[:, None]), state)  # [B, 1, H, *]
        return y[:, 0], cache

    def _attend_cached(self, q: Array, k: Array, v: Array, cache: KVCache
                       ) -> tuple[Array, KVCache]:
        """Projected ``q, k [B, P, H, m]``, ``v [B, P, H, d]`` -> ``(y [B, P, D], cache)``.

        With ``p = cache.position``, the new keys and values are written at ``p .. p + P - 1``
        and query ``p + i`` attends over the cached keys ``0 .. p + i`` through
        ``jax.nn.dot_product_attention`` (what :func:`astroflax.kernels.softmax_attention`
        wraps; the kernel itself takes equal query and key lengths only).
        """
        pos, P = cache.position, q.shape[1]
        kc = jax.lax.dynamic_update_slice_in_dim(cache.k, k.astype(cache.k.dtype), pos, 1)
        vc = jax.lax.dynamic_update_slice_in_dim(cache.v, v.astype(cache.v.dtype), pos, 1)
        keys = jnp.arange(self.max_len, dtype=pos.dtype)
        queries = pos + jnp.arange(P, dtype=pos.dtype)
        visible = (keys[None, :] <= queries[:, None])[None, None]  # [1, 1, P, T_max]
        # The promotion context is the kernel's (dot_product_attention mixes float32 logits in).
        with jax.numpy_dtype_promotion("standard"):
            y = jax.nn.dot_product_attention(q, kc.astype(q.dtype), vc.astype(q.dtype),
                                             mask=visible)
        return self.out(y.astype(v.dtype)), KVCache(k=kc, v=vc, position=pos + P)
