"""The Transformer's attention layer: :class:`SoftmaxAttention`, decoding with a KV cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from astroflax.kernels import softmax_attention
from astroflax.nn.attention_base import ProjectedAttention
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

    def prefill(self, x: Array) -> tuple[Array, KVCache]:
        """Causal attention over a prompt ``x [B, P, D]`` -> ``(y [B, P, D], cache)``."""
        self._require_causal("prefill")
        B, P, _ = x.shape
        self._check_length(P)
        q, k, v = self._qkv(x)
        y = self._softmax(q, k, v, mask=None)
        cache = self.init_decode_state(B)
        return self.out(y), KVCache(k=cache.k.at[:, :P].set(k.astype(cache.k.dtype)),
                                    v=cache.v.at[:, :P].set(v.astype(cache.v.dtype)),
                                    position=jnp.asarray(P, jnp.int32))

    def step(self, x_t: Array, state: KVCache) -> tuple[Array, KVCache]:
        """One token ``x_t [B, D]`` at ``state.position`` -> ``(y_t [B, D], cache)``.

        The query attends over the cached keys ``0..position`` through
        ``jax.nn.dot_product_attention`` (what :func:`astroflax.kernels.softmax_attention`
        wraps; the kernel itself takes equal query and key lengths only).
        """
        self._require_causal("step")
        q, k, v = self._qkv(x_t[:, None])  # [B, 1, H, *]
        pos = state.position
        kc = jax.lax.dynamic_update_slice_in_dim(state.k, k.astype(state.k.dtype), pos, 1)
        vc = jax.lax.dynamic_update_slice_in_dim(state.v, v.astype(state.v.dtype), pos, 1)
        visible = (jnp.arange(self.max_len, dtype=pos.dtype) <= pos)[None, None, None, :]
        # The promotion context is the kernel's (dot_product_attention mixes float32 logits in).
        with jax.numpy_dtype_promotion("standard"):
            y = jax.nn.dot_product_attention(q, kc.astype(q.dtype), vc.astype(q.dtype),
                                             mask=visible)
        return self.out(y.astype(v.dtype))[:, 0], KVCache(k=kc, v=vc, position=pos + 1)
