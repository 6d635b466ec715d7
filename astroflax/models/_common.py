"""What every zoo model shares: the token-mixing trunk (positions, dropout, blocks) and its aux."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax import Array

from astroflax.nn.blocks import BlockStack
from astroflax.nn.embed import AbsolutePositions, embed_scale_factor, resolve_pos_embedding
from astroflax.nn.spec import AttentionSpec


def check_positive(**values: int | None) -> None:
    """ValueError naming the first of ``values`` that is set and not a positive int."""
    for field, v in values.items():
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            raise ValueError(f"{field}: expected a positive int, got {v!r}")


class Trunk(nnx.Module):
    """Absolute positions (optional) + dropout + :class:`BlockStack`: ``[B, T, D] -> [B, T, D]``."""

    def __init__(self, *, features: int, num_layers: int, num_heads: int, max_len: int,
                 causal: bool, attention: AttentionSpec | str, mlp_dim: int | None, norm: str,
                 dropout: float, pos_embedding: str, embed_scale: str | None, dtype: Any,
                 param_dtype: Any, rngs: nnx.Rngs):
        """Keyword arguments as in the models (see :class:`astroflax.models.AstroLM`).

        ``embed_scale`` (token models; None for patches, added unscaled): the inputs are
        multiplied by :func:`astroflax.nn.embed.embed_scale_factor` before positions are added.
        """
        check_positive(features=features, num_layers=num_layers, num_heads=num_heads,
                       max_len=max_len)
        if not (isinstance(dropout, int | float) and 0 <= dropout < 1):
            raise ValueError(f"dropout: expected a rate in [0, 1), got {dropout!r}")
        if not isinstance(causal, bool):
            raise ValueError(f"causal: expected True or False, got {causal!r}")
        self.max_len = max_len
        self.input_scale = 1.0 if embed_scale is None else embed_scale_factor(embed_scale,
                                                                              features)
        kind = resolve_pos_embedding(pos_embedding, attention)
        self.pos_embedding = kind
        self.positions = (None if kind == "none" else
                          AbsolutePositions(max_len, features, kind=kind,
                                            param_dtype=param_dtype, rngs=rngs))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.stack = BlockStack(num_layers, features, num_heads, norm=norm, dtype=dtype,
                                param_dtype=param_dtype, rngs=rngs, max_len=max_len,
                                causal=causal, attention=attention, mlp_dim=mlp_dim,
                                dropout=dropout)

    def check_length(self, T: int) -> None:
        """ValueError when ``T`` exceeds the model's ``max_len`` (``T_max``)."""
        if self.max_len < T:
            raise ValueError(f"sequence length {T} exceeds the model's max_len (T_max) "
                             f"{self.max_len}; allowed: 1..{self.max_len}")

    def embed_positions(self, x: Array, start: Array | int = 0) -> Array:
        """``x [B, T, D]`` · ``input_scale`` + positions from ``start`` (if any), then dropout."""
        if self.input_scale != 1.0:
            x = x * jnp.asarray(self.input_scale, x.dtype)
        if self.positions is not None:
            x = self.positions(x, start=start)
        return self.dropout(x)

    def __call__(self, x: Array, *, mask: Array | None = None, capture_calcium: bool = False
                 ) -> tuple[Array, dict[str, Any]]:
        """``x [B, T, D]`` (embedded tokens) -> ``(h [B, T, D], aux)``.

        ``aux["calcium"]``: with ``capture_calcium``, a tuple of per-layer calcium responses
        ``c [B, T, H]`` (Eq. 15; None for softmax layers).
        """
        self.check_length(x.shape[1])
        h, calcium = self.stack(self.embed_positions(x), mask=mask,
                                return_calcium=capture_calcium)
        return h, ({"calcium": calcium} if capture_calcium else {})


def masked_mean(h: Array, mask: Array | None) -> Array:
    """Mean of ``h [B, T, D]`` over real tokens (``mask [B, T]`` bool; None = all) -> ``[B, D]``."""
    if mask is None:
        return jnp.mean(h, axis=1)
    w = mask.astype(h.dtype)[:, :, None]
    return jnp.sum(h * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1)
