"""The astro family's attention layer: :class:`AstroAttention` (paper Eq. 8–17, docs/model.md §5).

It wraps :func:`astroflax.kernels.astro_attention` with the astrocytic positional parameters
(docs/model.md §3) and, for ``kozachkov_rf``, a fixed random projection; decoding is recurrent,
O(m·d) per token per head (:class:`RecurrentState`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from astroflax.kernels import (
    AstroState,
    astro_attention,
    astro_positional,
    draw_random_projection,
)
from astroflax.kernels.astro import calcium_drive
from astroflax.kernels.astro.core import accumulation_dtype
from astroflax.kernels.feature_maps import apply_feature_map
from astroflax.nn.attention_base import (
    ProjectedAttention,
    output_from_head_major,
    prefill_start,
    project_head_major,
)
from astroflax.nn.sharding import eager_sharding_active, param
from astroflax.nn.spec import AttentionSpec, attention_spec

__all__ = ["AstroAttention", "RandomProjection", "RecurrentState", "init_positional_weights"]


class RandomProjection(nnx.Variable):
    """A fixed (non-trained) random-feature matrix: not an ``nnx.Param``, so optimizers skip it."""


class RecurrentState(NamedTuple):
    """Decoding state of an astro-family layer.

    Attributes:
      astro: ``AstroState(S [B, H, m, d], z [B, H, m])`` (float32 or wider).
      position: ``[]`` int32, tokens seen so far (the row of the positional term to use next).
      pos_keys: the positional term ``A [T_max, H, m]`` computed once for the whole generation
        (None without the term); each step reads its row instead of recomputing ``A``.
    """

    astro: AstroState
    position: Array
    pos_keys: Array | None


@functools.partial(jax.jit, static_argnames=("num_heads", "m", "max_len", "decay", "target_std",
                                             "dtype"))
def init_positional_weights(key: Array, num_heads: int, m: int, max_len: int, *,
                            decay: float, target_std: float = 1.0,
                            dtype: Any = jnp.float32) -> Array:
    """Initial ``M [H, m, T_max]``: Gaussian, rescaled per head so that ``std(A) = target_std``.

    ``A = Mᵀ M P Mᵀ`` is cubic in M, so a fixed scale would make ``φ(A)`` vanish or explode with
    ``T_max`` and ``m``; rescaling each head's draw by ``(target_std / std(A))^(1/3)`` makes the
    positional rates ``φ(A)`` O(1) at init for every preset, comparable to the key rates.
    """
    M = jax.random.normal(key, (num_heads, m, max_len), jnp.float32)
    A = jax.vmap(lambda Mh: astro_positional(Mh, decay=decay, length=max_len))(M)  # [H, T, m]
    std = jnp.std(A, axis=(1, 2))
    scale = (target_std / jnp.maximum(std, 1e-30)) ** (1.0 / 3.0)
    return (M * scale[:, None, None]).astype(dtype)


class AstroAttention(ProjectedAttention):
    """Multi-head astromorphic attention of one astro-family spec (paper Eq. 8–17).

    Shapes: ``x [B, T, D] -> [B, T, D]``; heads ``H``, ``m`` hidden neurons per head (q/k width),
    ``d`` value width per head. The astrocytic positional term ``A [T_max, H, m]`` (Eq. 12) is
    computed over the whole window ``T_max`` from ``M [H, m, T_max]`` and a per-head decay
    ``s = exp(log_decay)`` (> 0 by construction; init ``spec.pos_decay_init``), and rows
    ``0..T-1`` are used, so padding and token-by-token generation see the same positional activity.
    """

    def __init__(self, features: int, num_heads: int, *, max_len: int,
                 attention: AttentionSpec | str = "astro", causal: bool = False,
                 kernel: Callable[..., Any] | None = None, qk_head_dim: int | None = None,
                 v_head_dim: int | None = None, use_bias: bool = True, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs, **spec_overrides: Any):
        """Builds the layer.

        Args:
          features: model width ``D``. num_heads: ``H``.
          max_len: ``T_max``, the longest sequence (positional window).
          attention: an astro-family :class:`AttentionSpec` or variant name.
          causal: decoder attention (query ``i`` sees ``t <= i``).
          kernel: replaces :func:`astroflax.kernels.astro_attention` (same keyword arguments,
            also in :meth:`prefill`/:meth:`step`, which pass ``initial_state``/``return_state``).
          qk_head_dim: ``m`` (default ``D // H``). v_head_dim: ``d`` (default ``D // H``).
          use_bias: biases in the four projections.
          dtype: computation dtype (None: from inputs and params). param_dtype: parameters.
          rngs: parameter initialisation (and the random projection of ``kozachkov_rf``).
          **spec_overrides: fields of :class:`AttentionSpec` replacing the spec's.

        Raises:
          ValueError: a spec that is not of the astro kernel, a bad spec field, or bad sizes.
        """
        spec = attention_spec(attention, **spec_overrides)
        if spec.kernel != "astro":
            raise ValueError(f"AstroAttention needs an astro-family spec, got kernel "
                             f"{spec.kernel!r}; use make_attention() for any spec")
        super().__init__(features, num_heads, max_len=max_len, causal=causal,
                         qk_head_dim=qk_head_dim, v_head_dim=v_head_dim, use_bias=use_bias,
                         dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.spec, self.kernel = spec, kernel
        H, m = num_heads, self.m
        self.state_width = m
        if spec.feature_map == "random_features":
            self.state_width = spec.num_features or m
            keys = jax.random.split(rngs.params(), H)
            W = jax.vmap(lambda k: draw_random_projection(k, self.state_width, m))(keys)
            self.projection = RandomProjection(W.astype(param_dtype),
                                               out_sharding=("heads", None, "kv"),
                                               eager_sharding=eager_sharding_active())
        else:
            self.projection = None
        self.m_div = spec.resolve_m_div(width=features, m=self.state_width)
        if spec.positional:
            M = init_positional_weights(rngs.params(), H, self.state_width, max_len,
                                        decay=spec.pos_decay_init,
                                        target_std=spec.pos_init_std, dtype=param_dtype)
            self.pos_M = param(M, ("heads", "kv", None))
            self.pos_log_decay = param(jnp.full((H,), math.log(spec.pos_decay_init),
                                                param_dtype), ("heads",))
        else:
            self.pos_M = self.pos_log_decay = None

    # Read-only views of the spec under the names the maths uses.
    variant = property(lambda self: self.spec.name)
    alpha = property(lambda self: self.spec.alpha)
    sigmoid = property(lambda self: self.spec.sigmoid)
    feature_map = property(lambda self: self.spec.feature_map)
    positional = property(lambda self: self.spec.positional)
    eps = property(lambda self: self.spec.eps)

    def positional_keys(self) -> Array | None:
        """Raw astrocytic activity ``A [T_max, H, m]`` (Eq. 12), or None without the term."""
        A = self._positional_keys_head_major()
        return None if A is None else jnp.transpose(A, (1, 0, 2))

    def _positional_keys_head_major(self) -> Array | None:
        # A [H, T_max, m], as astro_positional makes it per head.
        if self.pos_M is None:
            return None
        decay = jnp.exp(self.pos_log_decay[...])
        return jax.vmap(lambda M, s: astro_positional(M, decay=s, length=self.max_len))(
            self.pos_M[...], decay)

    def _projection(self) -> Array | None:
        return None if self.projection is None else self.projection[...]

    def _astro(self, q: Array, k: Array, v: Array, *, mask: Array | None, pos_keys: Array | None,
               mode: str, initial_state: AstroState | None = None,
               return_state: bool = False, **layout: str) -> Any:
        fn = self.kernel or astro_attention
        s = self.spec
        return fn(q, k, v, causal=self.causal, alpha=s.alpha, sigmoid=s.sigmoid,
                  m_div=self.m_div, pos_keys=pos_keys, mask=mask, feature_map=s.feature_map,
                  projection=self._projection(), mode=mode, chunk_size=s.chunk_size,
                  eps=s.eps, initial_state=initial_state, return_state=return_state,
                  implementation=s.implementation, **layout)

    def _head_major_attention(self, x: Array, mask: Array | None) -> tuple[Array, Array, Array]:
        """Projections, kernel and output projection with head-major activations inside.

        ``x [B, T, D]`` -> ``(out [B, T, D], q, k [B, H, T, n])``. The projection einsums write
        ``[B, H, T, *]`` and the output projection reads ``[B, H, T, d]``, so the kernel gets
        its per-head blocks contiguous without transposing its inputs and output (the
        whole-layer forward is faster this way on XLA:CPU, benchmarks/README.md). Same
        parameters, dtype promotion and precision as the ``nnx.LinearGeneral`` layers.
        """
        q, k, v = (project_head_major(p, x) for p in (self.query, self.key, self.value))
        y = self._astro(q, k, v, mask=mask, pos_keys=self._positional_keys_head_major(),
                        mode=self.spec.mode, layout="BHTD")
        return output_from_head_major(self.out, y), q, k

    def _features(self, x: Array) -> Array:
        """``φ(x)`` for ``x [B, T, H, n]`` -> ``[B, T, H, m]``, in float32 or wider."""
        x = x.astype(accumulation_dtype(x.dtype))
        W = self._projection()
        if W is None:
            return apply_feature_map(x, self.spec.feature_map, None)
        return jax.vmap(lambda xh, Wh: apply_feature_map(xh, self.spec.feature_map,
                                                         Wh.astype(xh.dtype)),
                        in_axes=(2, 0), out_axes=2)(x, W)

    def calcium(self, q: Array, k: Array, mask: Array | None = None) -> Array:
        """Calcium response ``c_i = φ(q_i)·(Σ_{t∈S(i)} φ(k_t))^alpha`` (Eq. 13–15), ``[B, T, H]``.

        Args:
          q, k: ``[B, T, H, n]`` projected queries and keys; mask: ``[B, T]`` bool or None.
        """
        q_feat, k_feat = self._features(q), self._features(k)
        if mask is not None:
            k_feat = jnp.where(mask[:, :, None, None], k_feat, 0)
        if self.causal:
            z = jnp.cumsum(k_feat, axis=1)
        else:
            z = jnp.broadcast_to(jnp.sum(k_feat, axis=1, keepdims=True), k_feat.shape)
        return jnp.sum(q_feat * calcium_drive(z, self.spec.alpha), axis=-1)

    def __call__(self, x: Array, *, mask: Array | None = None,
                 return_calcium: bool = False) -> Array | tuple[Array, Array | None]:
        """Attention over a whole sequence.

        Args:
          x: ``[B, T, D]`` with ``T <= max_len``.
          mask: ``[B, T]`` bool, True = real token (padding neither writes nor is read).
          return_calcium: also return the calcium response ``[B, T, H]``.

        Returns:
          ``[B, T, D]`` (and the calcium response with ``return_calcium``).
        """
        self._check_length(x.shape[1])
        if self.kernel is None:
            out, q, k = self._head_major_attention(x, mask)
            q, k = jnp.swapaxes(q, 1, 2), jnp.swapaxes(k, 1, 2)
        else:  # a replacement kernel keeps astro_attention's default [B, T, H, *] contract
            q, k, v = self._qkv(x)
            y = self._astro(q, k, v, mask=mask, pos_keys=self.positional_keys(),
                            mode=self.spec.mode)
            out = self.out(y)
        return (out, self.calcium(q, k, mask)) if return_calcium else out

    # ---------------------------------------------------------------- generation
    def init_decode_state(self, batch_size: int) -> RecurrentState:
        """The empty decoding state for ``batch_size`` sequences (nothing written yet).

        The positional term ``A`` is computed here, once; :meth:`step` reads its rows.
        """
        self._require_causal("init_decode_state")
        acc = accumulation_dtype(self.dtype or self.param_dtype)
        H = self.num_heads
        state = AstroState(S=jnp.zeros((batch_size, H, self.state_width, self.d), acc),
                           z=jnp.zeros((batch_size, H, self.state_width), acc))
        return RecurrentState(astro=state, position=jnp.zeros((), jnp.int32),
                              pos_keys=self.positional_keys())

    def prefill(self, x: Array, state: RecurrentState | None = None
                ) -> tuple[Array, RecurrentState]:
        """Causal attention over ``x [B, P, D]``, from the start or continuing ``state``.

        With a state (from :meth:`init_decode_state`, :meth:`prefill` or :meth:`step`) the
        tokens sit at positions ``state.position .. state.position + P - 1``: the kernel starts
        from the state's ``S, z`` and reads those rows of the positional term, so
        ``prefill(x[:, :a])`` then ``prefill(x[:, a:], state)`` gives the outputs and the final
        state of ``prefill(x)`` (to rounding), in every kernel mode and implementation (each
        takes an initial state; a replacement ``kernel`` must honour ``initial_state`` too).
        The positional term is recomputed from the current parameters, not read from
        ``state.pos_keys``, so a segment recurrence differentiates through it.

        Args:
          x: ``[B, P, D]``, ``P >= 1``.
          state: None (position 0, empty state) or this layer's decoding state.

        Returns:
          ``(y [B, P, D], state)`` ready for :meth:`step` at position ``state.position + P``:
          the kernel's final state (its mode, no re-run later) and the positional term of the
          whole window.

        Raises:
          ValueError: a non-causal layer, a state of another layer kind or shape, or
            ``position + P > max_len`` (see :func:`astroflax.nn.attention_base.prefill_start`;
            a traced position is not checked).
        """
        self._require_causal("prefill")
        P = x.shape[1]
        self._check_length(P)
        start = prefill_start(state, RecurrentState, P, self.max_len)
        q, k, v = self._qkv(x)
        A = self.positional_keys()
        rows = A if A is None or state is None else jax.lax.dynamic_slice_in_dim(A, start, P)
        y, astro = self._astro(q, k, v, mask=None, pos_keys=rows, mode=self.spec.mode,
                               initial_state=None if state is None else state.astro,
                               return_state=True)
        return self.out(y), RecurrentState(astro=astro, position=start + P, pos_keys=A)

    def step(self, x_t: Array, state: RecurrentState) -> tuple[Array, RecurrentState]:
        """One token: ``x_t [B, D]`` at position ``state.position`` -> ``(y_t [B, D], state)``.

        One recurrent kernel step, O(m·d) per head, with row ``position`` of the ``A`` kept in
        the state. Positions past ``max_len - 1`` are not checked here (traced);
        :meth:`astroflax.models.AstroLM.generate` checks the length up front.
        """
        self._require_causal("step")
        q, k, v = self._qkv(x_t[:, None])  # [B, 1, H, *]
        pos, A = state.position, state.pos_keys
        row = None if A is None else jax.lax.dynamic_slice_in_dim(A, pos, 1)  # [1, H, m]
        y, astro = self._astro(q, k, v, mask=None, pos_keys=row, mode="recurrent",
                               initial_state=state.astro, return_state=True)
        return self.out(y)[:, 0], RecurrentState(astro=astro, position=pos + 1, pos_keys=A)
