"""Transformer blocks: attention + FFN with the paper's post-LayerNorm (Eq. 2–3) or pre-LayerNorm.

Post-LN (paper Eq. 2–3, the default)::

    x = LN(x + Dropout(Attn(x)));  x = LN(x + Dropout(FFN(x)))

Pre-LN (``norm="pre"``; the model then adds a final LayerNorm)::

    x = x + Dropout(Attn(LN(x)));  x = x + Dropout(FFN(LN(x)))

Both are per-token apart from attention, so :meth:`TransformerBlock.step` decodes one token.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from astroflax.kernels.astro.core import accumulation_dtype
from astroflax.nn.attention import DecodeState, make_attention
from astroflax.nn.sharding import param, partitioned
from astroflax.nn.spec import AttentionSpec

NORMS = ("post", "pre")


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis: ``x [..., D] -> [..., D]`` in ``x``'s dtype.

    Statistics in float32 (float64 for float64 inputs) whatever the input dtype. Written out
    rather than ``nnx.LayerNorm``, whose statistics use ``jnp.promote_types(dtype, float32)``
    and so fail for bfloat16 and float64 under strict dtype promotion.
    """

    def __init__(self, features: int, *, epsilon: float = 1e-6, param_dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):
        """Builds ``scale`` (ones) and ``bias`` (zeros), ``[D]``, annotated ``("embed",)``."""
        del rngs  # deterministic init; kept for the module convention
        self.epsilon = epsilon
        self.scale = param(jnp.ones((features,), param_dtype), ("embed",))
        self.bias = param(jnp.zeros((features,), param_dtype), ("embed",))

    def __call__(self, x: Array) -> Array:
        """``x [..., D] -> [..., D]``."""
        acc = accumulation_dtype(x.dtype)
        xf = x.astype(acc)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon)
        y = y * self.scale[...].astype(acc) + self.bias[...].astype(acc)
        return y.astype(x.dtype)


def dense(in_features: int, out_features: int, names: tuple[str | None, str | None], *,
          dtype: Any = None, param_dtype: Any = jnp.float32, rngs: nnx.Rngs) -> nnx.Linear:
    """``nnx.Linear`` ``[..., in] -> [..., out]`` whose kernel carries logical axes ``names``."""
    return nnx.Linear(in_features, out_features, dtype=dtype, param_dtype=param_dtype,
                      kernel_init=partitioned(nnx.initializers.lecun_normal(), names),
                      bias_init=partitioned(nnx.initializers.zeros_init(), (names[1],)),
                      rngs=rngs)


class FeedForward(nnx.Module):
    """Position-wise FFN ``W_2 GELU(W_1 x)``: ``[..., D] -> [..., D]`` via ``mlp_dim`` units."""

    def __init__(self, features: int, mlp_dim: int, *, dropout: float = 0.0, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        """Builds ``W_1 [D, F]`` (``"embed", "mlp"``) and ``W_2 [F, D]`` (``"mlp", "embed"``)."""
        self.up = dense(features, mlp_dim, ("embed", "mlp"), dtype=dtype,
                        param_dtype=param_dtype, rngs=rngs)
        self.down = dense(mlp_dim, features, ("mlp", "embed"), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        """``x [..., D] -> [..., D]``."""
        return self.down(self.dropout(jax.nn.gelu(self.up(x))))


class TransformerBlock(nnx.Module):
    """Attention + FFN with residuals and LayerNorms: ``x [B, T, D] -> [B, T, D]``."""

    def __init__(self, features: int, num_heads: int, *, max_len: int, causal: bool = False,
                 attention: AttentionSpec | str = "astro", mlp_dim: int | None = None,
                 norm: str = "post", dropout: float = 0.0, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        """Builds the block.

        Args:
          features: width ``D``. num_heads: ``H``. max_len: ``T_max``.
          causal: True for a decoder block (query ``i`` sees ``t <= i``), False for an
            encoder block (every token sees every token).
          attention: an :class:`astroflax.nn.AttentionSpec` or a variant name of
            :data:`astroflax.nn.VARIANTS` (``none``: the block is its FFN only).
          mlp_dim: FFN width (default ``4·D``; the paper does not state it); ``0``: no FFN
            sub-layer (and no second LayerNorm), the block is its attention sub-layer alone (as
            the models of Zoology's associative-recall study, which have no MLP).
          norm: ``"post"`` (paper Eq. 2–3) or ``"pre"``.
          dropout: rate after attention, inside and after the FFN.
          dtype, param_dtype: computation and parameter dtypes. rngs: initialisation, dropout.
        """
        if norm not in NORMS:
            raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
        self.norm = norm
        self.attention = make_attention(features, num_heads, max_len=max_len,
                                        attention=attention, causal=causal, dtype=dtype,
                                        param_dtype=param_dtype, rngs=rngs)
        if mlp_dim is not None and not (isinstance(mlp_dim, int) and mlp_dim >= 0):
            raise ValueError(f"mlp_dim: expected None, 0 (no FFN) or a positive int, got "
                             f"{mlp_dim!r}")
        self.ffn = None if mlp_dim == 0 else FeedForward(
            features, mlp_dim or 4 * features, dropout=dropout, dtype=dtype,
            param_dtype=param_dtype, rngs=rngs)
        self.norm1 = LayerNorm(features, param_dtype=param_dtype, rngs=rngs)
        self.norm2 = (None if self.ffn is None else
                      LayerNorm(features, param_dtype=param_dtype, rngs=rngs))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def _mix(self, x: Array, attend: Any) -> tuple[Array, Any]:
        """Applies the block around ``attend(h) -> (y, extra)``; returns ``(x, extra)``."""
        if self.norm == "post":
            y, extra = attend(x)
            x = self.norm1(x + self.dropout(y))
            if self.ffn is not None:
                x = self.norm2(x + self.dropout(self.ffn(x)))
        else:
            y, extra = attend(self.norm1(x))
            x = x + self.dropout(y)
            if self.ffn is not None:
                x = x + self.dropout(self.ffn(self.norm2(x)))
        return x, extra

    def __call__(self, x: Array, *, mask: Array | None = None,
                 return_calcium: bool = False) -> Array | tuple[Array, Array | None]:
        """``x [B, T, D]``, ``mask [B, T]`` bool -> ``[B, T, D]`` (and calcium ``[B, T, H]``)."""
        out, c = self._mix(x, lambda h: self.attention(h, mask=mask, return_calcium=True)
                           if return_calcium else (self.attention(h, mask=mask), None))
        return (out, c) if return_calcium else out

    def init_decode_state(self, batch_size: int) -> DecodeState:
        """Empty decoding state (see :meth:`AstroAttention.init_decode_state`)."""
        return self.attention.init_decode_state(batch_size)

    def prefill(self, x: Array, state: DecodeState | None = None
                ) -> tuple[Array, DecodeState]:
        """Causal block over ``x [B, P, D]`` -> ``(y [B, P, D], state)``.

        ``state``: None (position 0) or this block's decoding state, continued as if its tokens
        had been in the same prefill (see :meth:`AstroAttention.prefill`).
        """
        return self._mix(x, lambda h: self.attention.prefill(h, state))

    def step(self, x_t: Array, state: DecodeState
             ) -> tuple[Array, DecodeState]:
        """One token ``x_t [B, D]`` -> ``(y_t [B, D], state)``."""
        return self._mix(x_t, lambda h: self.attention.step(h, state))


class BlockStack(nnx.Module):
    """``num_layers`` :class:`TransformerBlock` s (plus a final LayerNorm for pre-LN).

    ``x [B, T, D] -> [B, T, D]``; decoding threads one state per layer.
    """

    def __init__(self, num_layers: int, features: int, num_heads: int, *, norm: str = "post",
                 dtype: Any = None, param_dtype: Any = jnp.float32, rngs: nnx.Rngs,
                 **block_kwargs: Any):
        """``block_kwargs``: the keyword arguments of :class:`TransformerBlock` (same per layer)."""
        self.blocks = nnx.List([
            TransformerBlock(features, num_heads, norm=norm, dtype=dtype,
                             param_dtype=param_dtype, rngs=rngs, **block_kwargs)
            for _ in range(num_layers)])
        self.final_norm = (LayerNorm(features, param_dtype=param_dtype, rngs=rngs)
                           if norm == "pre" else None)

    def _finish(self, x: Array) -> Array:
        return x if self.final_norm is None else self.final_norm(x)

    def __call__(self, x: Array, *, mask: Array | None = None, return_calcium: bool = False
                 ) -> tuple[Array, tuple[Array | None, ...]]:
        """``x [B, T, D]`` -> ``(x [B, T, D], per-layer calcium [B, T, H] or ())``."""
        calcium = []
        for block in self.blocks:
            if return_calcium:
                x, c = block(x, mask=mask, return_calcium=True)
                calcium.append(c)
            else:
                x = block(x, mask=mask)
        return self._finish(x), tuple(calcium)

    def init_decode_state(self, batch_size: int) -> tuple[DecodeState, ...]:
        """One empty decoding state per layer."""
        return tuple(block.init_decode_state(batch_size) for block in self.blocks)

    def prefill(self, x: Array, states: tuple[DecodeState, ...] | None = None
                ) -> tuple[Array, tuple[DecodeState, ...]]:
        """Causal pass over ``x [B, P, D]`` -> ``(y [B, P, D], states)``.

        ``states``: None (position 0) or one decoding state per layer, continued as if their
        tokens had been in the same prefill.

        Raises:
          ValueError: ``states`` without one state per layer (and the layers' own errors).
        """
        if states is None:
            states = (None,) * len(self.blocks)
        elif len(states) != len(self.blocks):
            raise ValueError(f"states: expected one decoding state per layer "
                             f"({len(self.blocks)}), got {len(states)}")
        new_states = []
        for block, s in zip(self.blocks, states, strict=True):
            x, s = block.prefill(x, s)
            new_states.append(s)
        return self._finish(x), tuple(new_states)

    def step(self, x_t: Array, states: tuple[DecodeState, ...]
             ) -> tuple[Array, tuple[DecodeState, ...]]:
        """One token ``x_t [B, D]`` -> ``(y_t [B, D], states)``."""
        new_states = []
        for block, s in zip(self.blocks, states, strict=True):
            x_t, s = block.step(x_t, s)
            new_states.append(s)
        return self._finish(x_t), tuple(new_states)
