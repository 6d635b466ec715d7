"""What the attention layers share: the four projections and the size, length and causality checks.

:class:`ProjectedAttention` is the base of :class:`astroflax.nn.AstroAttention` and
:class:`astroflax.nn.SoftmaxAttention`: ``W_Q, W_K`` (``D -> H·m``), ``W_V`` (``D -> H·d``),
``W_O`` (``H·d -> D``). :func:`project_head_major` and :func:`output_from_head_major` apply
those projections with head-major activations, for kernels that read ``[B, H, T, *]``.
:func:`prefill_start` is where every layer's ``prefill`` continues from a decoding state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from astroflax.nn.sharding import partitioned

__all__ = ["ProjectedAttention", "output_from_head_major", "prefill_start",
           "project_head_major"]


class ProjectedAttention(nnx.Module):
    """Sizes, the four projections, and the length and causality checks of an attention layer."""

    def __init__(self, features: int, num_heads: int, *, max_len: int, causal: bool,
                 qk_head_dim: int | None, v_head_dim: int | None, use_bias: bool, dtype: Any,
                 param_dtype: Any, rngs: nnx.Rngs):
        """Builds ``query``, ``key`` (``[D, H, m]``), ``value`` (``[D, H, d]``), ``out``.

        Args:
          features: model width ``D``. num_heads: ``H``. max_len: ``T_max``.
          causal: decoder attention (query ``i`` sees ``t <= i``).
          qk_head_dim: ``m`` (default ``D // H``). v_head_dim: ``d`` (default ``D // H``).
          use_bias: biases in the four projections.
          dtype: computation dtype (None: from inputs and params). param_dtype: parameters.
          rngs: parameter initialisation.

        Raises:
          ValueError: ``D`` not divisible by ``H`` without explicit head widths, or a
            ``max_len`` that is not a positive int.
        """
        if features % num_heads and (qk_head_dim is None or v_head_dim is None):
            raise ValueError(f"features={features} must be divisible by num_heads={num_heads} "
                             "unless qk_head_dim and v_head_dim are given")
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len: expected a positive int, got {max_len!r}")
        self.features, self.num_heads, self.max_len = features, num_heads, max_len
        self.causal = causal
        self.m = qk_head_dim or features // num_heads
        self.d = v_head_dim or features // num_heads
        self.dtype, self.param_dtype = dtype, param_dtype
        H, D = num_heads, features

        def proj_in(width: int) -> nnx.LinearGeneral:
            return nnx.LinearGeneral(
                D, (H, width), use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                kernel_init=partitioned(nnx.initializers.lecun_normal(), ("embed", "heads", "kv")),
                bias_init=partitioned(nnx.initializers.zeros_init(), ("heads", "kv")), rngs=rngs)

        self.query, self.key, self.value = proj_in(self.m), proj_in(self.m), proj_in(self.d)
        self.out = nnx.LinearGeneral(
            (H, self.d), D, axis=(-2, -1), use_bias=use_bias, dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=partitioned(nnx.initializers.lecun_normal(), ("heads", "kv", "embed")),
            bias_init=partitioned(nnx.initializers.zeros_init(), ("embed",)), rngs=rngs)

    def _check_length(self, T: int) -> None:
        if self.max_len < T:
            raise ValueError(f"sequence length {T} exceeds the model's max_len (T_max) "
                             f"{self.max_len}; allowed: 1..{self.max_len}")

    def _qkv(self, x: Array) -> tuple[Array, Array, Array]:
        return self.query(x), self.key(x), self.value(x)

    def _require_causal(self, what: str) -> None:
        if not self.causal:
            raise ValueError(f"{what} needs a causal layer (causal=True); this one is not")


def project_head_major(proj: nnx.LinearGeneral, x: Array) -> Array:
    """``proj(x)`` for ``x [B, T, D]`` and a ``D -> (H, n)`` projection, as ``[B, H, T, n]``."""
    return _einsum_projection(proj, x, "btD,Dhn->bhtn", lambda b: b[:, None, :])


def output_from_head_major(proj: nnx.LinearGeneral, y: Array) -> Array:
    """``proj`` (``(H, d) -> D``) applied to head-major ``y [B, H, T, d]``: ``[B, T, D]``."""
    return _einsum_projection(proj, y, "bhtd,hdD->btD", lambda b: b)


def _einsum_projection(proj: nnx.LinearGeneral, x: Array, equation: str,
                       bias_layout: Callable[[Array], Array]) -> Array:
    # The layer's own kernel, bias, dtype promotion and precision, contracted by ``equation``
    # so that the result comes out in the layout the kernel reads (no transpose after it).
    kernel = proj.kernel[...]
    bias = None if proj.bias is None else proj.bias[...]
    x, kernel, bias = proj.promote_dtype((x, kernel, bias), dtype=proj.dtype)
    y = jnp.einsum(equation, x, kernel, precision=proj.precision,
                   preferred_element_type=proj.preferred_element_type)
    return y if bias is None else y + bias_layout(bias)


def prefill_start(state: Any | None, state_type: type, length: int, max_len: int) -> Array:
    """The position a prefill of ``length`` tokens starts at: 0, or ``state.position``.

    Args:
      state: None (a fresh sequence) or the decoding state a layer's ``init_decode_state``,
        ``prefill`` or ``step`` returned (its ``position`` an ``[]`` int32 array).
      state_type: the state class the layer keeps (``RecurrentState``, ``KVCache``, ...).
      length: ``P``, the tokens of the prefill. max_len: the layer's ``T_max``.

    Returns:
      ``[]`` int32: the position of the first token.

    Raises:
      ValueError: a state of another class, or ``position + length > max_len`` (a
        continuation past the window). A traced position (the state passed into ``jit``) is
        not checked, as in ``step``: check the total length before tracing.
    """
    if state is None:
        return jnp.zeros((), jnp.int32)
    if not isinstance(state, state_type):
        raise ValueError(f"state: expected the {state_type.__name__} that this layer's "
                         f"init_decode_state, prefill or step returns, got "
                         f"{type(state).__name__}")
    position = state.position
    if not isinstance(position, jax.core.Tracer) and int(position) + length > max_len:
        raise ValueError(f"prefill of {length} tokens from position {int(position)} runs past "
                         f"the model's max_len (T_max) {max_len}: position + length must be "
                         f"<= {max_len}; start a new state (init_decode_state) or build the "
                         "model with a larger max_len")
    return jnp.asarray(position, jnp.int32)
