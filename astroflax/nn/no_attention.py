"""The ``none`` control's attention layer: :class:`NoAttention`, zeros and no parameters."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from flax import nnx
from jax import Array

from astroflax.nn.attention_base import prefill_start
from astroflax.nn.spec import VARIANTS

__all__ = ["NoAttention", "PositionState"]


class PositionState(NamedTuple):
    """Decoding state of :class:`NoAttention`: only ``position`` (``[]`` int32 tokens seen)."""

    position: Array


class NoAttention(nnx.Module):
    """The ``none`` control: the attention sub-layer contributes zeros and has no parameters.

    ``x [B, T, D] -> 0 [B, T, D]``, so a block around it is its FFN with the residuals and
    norms unchanged (``x + 0`` is ``x`` exactly).
    """

    def __init__(self, features: int, num_heads: int, *, max_len: int, causal: bool = False):
        """Keeps the sizes only (``max_len`` bounds decoding like the other layers)."""
        self.features, self.num_heads, self.max_len, self.causal = (features, num_heads,
                                                                    max_len, causal)
        self.spec = VARIANTS["none"]

    variant = property(lambda self: self.spec.name)

    def __call__(self, x: Array, *, mask: Array | None = None,
                 return_calcium: bool = False) -> Array | tuple[Array, None]:
        """``x [B, T, D]`` -> zeros ``[B, T, D]`` (calcium: None)."""
        del mask
        out = jnp.zeros_like(x)
        return (out, None) if return_calcium else out

    def init_decode_state(self, batch_size: int) -> PositionState:
        """Position 0 (there is nothing else to remember)."""
        del batch_size
        return PositionState(position=jnp.zeros((), jnp.int32))

    def prefill(self, x: Array, state: PositionState | None = None
                ) -> tuple[Array, PositionState]:
        """``x [B, P, D]`` -> ``(zeros [B, P, D], position p + P)``, ``p = state.position`` or 0.

        Raises:
          ValueError: a state of another layer kind, or ``p + P > max_len`` (see
            :func:`astroflax.nn.attention_base.prefill_start`; a traced position is not
            checked).
        """
        P = x.shape[1]
        start = prefill_start(state, PositionState, P, self.max_len)
        return jnp.zeros_like(x), PositionState(position=start + P)

    def step(self, x_t: Array, state: PositionState) -> tuple[Array, PositionState]:
        """``x_t [B, D]`` -> ``(zeros [B, D], position + 1)``."""
        return jnp.zeros_like(x_t), PositionState(position=state.position + 1)
