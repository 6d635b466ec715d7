"""The attention layer an ``AttentionSpec`` names, and the decoding state any of them keeps.

One layer per kernel of a spec, each in its own module:

* :class:`AstroAttention` (``nn/astro_attention.py``): the astro family of docs/model.md §5
  (paper Eq. 8–17); decoding state :class:`RecurrentState`.
* :class:`SoftmaxAttention` (``nn/softmax_attention.py``): the Transformer's; :class:`KVCache`.
* :class:`NoAttention` (``nn/no_attention.py``): the ``none`` control; :class:`PositionState`.

They share the projections of ``nn/attention_base.py`` (none has no parameters) and one
decoding interface: ``init_decode_state``, ``prefill``, ``step``.
:func:`make_attention` builds the one a spec names.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from astroflax.nn.astro_attention import AstroAttention, RecurrentState
from astroflax.nn.no_attention import NoAttention, PositionState
from astroflax.nn.softmax_attention import KVCache, SoftmaxAttention
from astroflax.nn.spec import ATTENTION_FIELDS, AttentionSpec, attention_spec

__all__ = ["AttentionLayer", "DecodeState", "make_attention"]

DecodeState = RecurrentState | KVCache | PositionState
AttentionLayer = AstroAttention | SoftmaxAttention | NoAttention


def make_attention(features: int, num_heads: int, *, max_len: int,
                   attention: AttentionSpec | str = "astro", causal: bool = False,
                   dtype: Any = None, param_dtype: Any = jnp.float32, rngs: nnx.Rngs,
                   **layer_kwargs: Any) -> AttentionLayer:
    """The attention layer ``attention`` (a spec or variant name) names, ``[B, T, D] -> [B, T, D]``.

    ``layer_kwargs``: fields of :class:`AttentionSpec` replacing the spec's, and further
    arguments of the layer class (``kernel``, ``qk_head_dim``, ...).

    Raises:
      ValueError: an unknown variant, or an astro-only setting on softmax / none.
    """
    spec = attention_spec(attention, **{k: layer_kwargs.pop(k) for k in list(layer_kwargs)
                                        if k in ATTENTION_FIELDS})
    if spec.kernel == "none":
        return NoAttention(features, num_heads, max_len=max_len, causal=causal)
    cls = SoftmaxAttention if spec.kernel == "softmax" else AstroAttention
    extra = {"attention": spec} if cls is AstroAttention else {}
    return cls(features, num_heads, max_len=max_len, causal=causal, dtype=dtype,
               param_dtype=param_dtype, rngs=rngs, **extra, **layer_kwargs)
