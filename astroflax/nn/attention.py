"""``AstroAttention``: the attention layer of every model in the zoo, over the pure-JAX kernels.

One module covers the variants of SPEC §5 (:data:`VARIANTS`): projections ``W_Q, W_K``
(``D -> H·m``), ``W_V`` (``D -> H·d``) and ``W_O`` (``H·d -> D``) around
:func:`astroflax.kernels.astro_attention` (or :func:`astroflax.kernels.softmax_attention`), the
astrocytic positional parameters (SPEC §3) and, for ``kozachkov_rf``, a fixed random projection.
Generation: :meth:`AstroAttention.init_state`, :meth:`AstroAttention.prefill` and
:meth:`AstroAttention.step` (recurrent, O(m·d) per token per head; a KV cache for softmax).
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
    elu1,
    positive_random_features,
    softmax_attention,
)
from astroflax.kernels.astro import calcium_drive
from astroflax.kernels.astro.core import accumulation_dtype
from astroflax.nn.sharding import eager_sharding_active, param, partitioned

#: SPEC §5, one row per variant. ``m_div=None`` means "the model's m_div" (the paper's scaling
#: parameter, ``m`` when unset); a number is fixed by the variant. ``kozachkov_rf`` fixes
#: ``m_div = 1`` (astroflax's choice; SPEC leaves it open): with alpha = 1 and no sigmoid, m_div
#: only scales the output, and Kozachkov's random-feature model approximates softmax attention
#: unscaled. Every entry can be overridden by the keyword of the same name.
VARIANTS: dict[str, dict[str, Any]] = {
    "astro": {"kernel": "astro", "feature_map": "elu1", "alpha": 0.25, "sigmoid": True,
              "positional": True, "m_div": None},
    "astro_no_pe": {"kernel": "astro", "feature_map": "elu1", "alpha": 0.25, "sigmoid": True,
                    "positional": False, "m_div": None},
    "astro_no_nonlin": {"kernel": "astro", "feature_map": "elu1", "alpha": 1.0, "sigmoid": False,
                        "positional": True, "m_div": None},
    "kozachkov_iso": {"kernel": "astro", "feature_map": "elu1", "alpha": 1.0, "sigmoid": False,
                      "positional": False, "m_div": None},
    "kozachkov_rf": {"kernel": "astro", "feature_map": "random_features", "alpha": 1.0,
                     "sigmoid": False, "positional": False, "m_div": 1.0},
    "linear": {"kernel": "astro", "feature_map": "elu1", "alpha": 1.0, "sigmoid": False,
               "positional": False, "m_div": 1.0},
    "softmax": {"kernel": "softmax"},
}

_ASTRO_ONLY = ("alpha", "sigmoid", "m_div", "feature_map", "positional", "num_features")


def check_variant(variant: str) -> dict[str, Any]:
    """The :data:`VARIANTS` row of ``variant``; ValueError listing the valid names otherwise."""
    if variant not in VARIANTS:
        raise ValueError(f"attention variant {variant!r} is unknown; allowed: {sorted(VARIANTS)}")
    return VARIANTS[variant]


class RandomProjection(nnx.Variable):
    """A fixed (non-trained) random-feature matrix: not an ``nnx.Param``, so optimizers skip it."""


class RecurrentState(NamedTuple):
    """Decoding state of an astro-family layer.

    Attributes:
      astro: ``AstroState(S [B, H, m, d], z [B, H, m])`` (float32 or wider).
      position: ``[]`` int32, tokens seen so far (the row of the positional term to use next).
    """

    astro: AstroState
    position: Array


class KVCache(NamedTuple):
    """Decoding state of the softmax layer: keys and values of every position up to ``T_max``.

    Attributes:
      k: ``[B, T_max, H, m]``; v: ``[B, T_max, H, d]``; position: ``[]`` int32 tokens seen.
    """

    k: Array
    v: Array
    position: Array


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


class AstroAttention(nnx.Module):
    """Multi-head attention of one :data:`VARIANTS` row: astromorphic (paper Eq. 8–17) or softmax.

    Shapes: ``x [B, T, D] -> [B, T, D]``; heads ``H``, ``m`` hidden neurons per head (q/k width),
    ``d`` value width per head. The astrocytic positional term ``A [T_max, H, m]`` (Eq. 12) is
    computed over the whole window ``T_max`` from ``M [H, m, T_max]`` and a per-head decay
    ``s = exp(log_decay)`` (> 0 by construction; init ``pos_decay_init``), and rows ``0..T-1``
    are used, so padding and token-by-token generation see the same positional activity.
    """

    def __init__(self, features: int, num_heads: int, *, max_len: int, variant: str = "astro",
                 causal: bool = False, mode: str = "auto", chunk_size: int = 64,
                 kernel: Callable[..., Any] | None = None, qk_head_dim: int | None = None,
                 v_head_dim: int | None = None, alpha: float | None = None,
                 sigmoid: bool | None = None, m_div: float | None = None,
                 feature_map: str | None = None, positional: bool | None = None,
                 num_features: int | None = None, pos_decay_init: float = 0.1,
                 pos_init_std: float = 1.0, eps: float = 1e-6, use_bias: bool = True,
                 dtype: Any = None, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        """Builds the layer.

        Args:
          features: model width ``D``. num_heads: ``H``.
          max_len: ``T_max``, the longest sequence (positional window and KV cache size).
          variant: a key of :data:`VARIANTS`.
          causal: decoder attention (query ``i`` sees ``t <= i``).
          mode: kernel mode, ``"auto" | "parallel" | "chunk" | "recurrent"`` (astro family).
          chunk_size: chunk length for ``"chunk"`` mode.
          kernel: replaces the kernel function, called with the same keyword arguments as
            ``astro_attention`` (astro family, also in :meth:`prefill`/:meth:`step`, which pass
            ``initial_state``/``return_state``) or ``softmax_attention`` (``softmax``; its
            decoding :meth:`step` attends over the KV cache directly, not through ``kernel``).
          qk_head_dim: ``m`` (default ``D // H``). v_head_dim: ``d`` (default ``D // H``).
          alpha, sigmoid, m_div, feature_map, positional: override the variant's row.
          num_features: random features per head for ``"random_features"`` (default ``m``).
          pos_decay_init: initial decay ``s`` of ``P_ij = exp(-s|i-j|)`` (all heads).
          pos_init_std: ``std(A)`` at init (see :func:`init_positional_weights`).
          eps: guard on the calcium response (Eq. 16).
          use_bias: biases in the four projections.
          dtype: computation dtype (None: from inputs and params). param_dtype: parameters.
          rngs: parameter initialisation (and the random projection of ``kozachkov_rf``).

        Raises:
          ValueError: unknown variant, astro-only setting on ``softmax``, or bad sizes.
        """
        row = dict(check_variant(variant))
        overrides = {"alpha": alpha, "sigmoid": sigmoid, "m_div": m_div,
                     "feature_map": feature_map, "positional": positional,
                     "num_features": num_features}
        if row["kernel"] == "softmax":
            given = [name for name in _ASTRO_ONLY if overrides[name] is not None]
            if given:
                raise ValueError(f"{given} apply to the astro-family variants only, not "
                                 f"'softmax'; astro-family variants: "
                                 f"{sorted(v for v in VARIANTS if v != 'softmax')}")
        else:
            row.update({k: v for k, v in overrides.items() if v is not None})
        if features % num_heads and (qk_head_dim is None or v_head_dim is None):
            raise ValueError(f"features={features} must be divisible by num_heads={num_heads} "
                             "unless qk_head_dim and v_head_dim are given")
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len: expected a positive int, got {max_len!r}")
        self.features, self.num_heads, self.max_len = features, num_heads, max_len
        self.variant, self.causal, self.mode, self.chunk_size = variant, causal, mode, chunk_size
        self.kernel_name = row["kernel"]
        self.kernel = kernel
        self.m = qk_head_dim or features // num_heads
        self.d = v_head_dim or features // num_heads
        self.alpha = float(row.get("alpha", 1.0))
        self.sigmoid = bool(row.get("sigmoid", False))
        self.m_div = row.get("m_div")
        self.feature_map = row.get("feature_map", "elu1")
        self.positional = bool(row.get("positional", False))
        self.eps = eps
        self.dtype, self.param_dtype = dtype, param_dtype
        H, m, d, D = num_heads, self.m, self.d, features

        def proj_in(width: int) -> nnx.LinearGeneral:
            return nnx.LinearGeneral(
                D, (H, width), use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                kernel_init=partitioned(nnx.initializers.lecun_normal(), ("embed", "heads", "kv")),
                bias_init=partitioned(nnx.initializers.zeros_init(), ("heads", "kv")), rngs=rngs)

        self.query, self.key, self.value = proj_in(m), proj_in(m), proj_in(d)
        self.out = nnx.LinearGeneral(
            (H, d), D, axis=(-2, -1), use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
            kernel_init=partitioned(nnx.initializers.lecun_normal(), ("heads", "kv", "embed")),
            bias_init=partitioned(nnx.initializers.zeros_init(), ("embed",)), rngs=rngs)
        self.state_width = m
        if self.kernel_name == "astro" and self.feature_map == "random_features":
            self.state_width = row.get("num_features") or m
            keys = jax.random.split(rngs.params(), H)
            W = jax.vmap(lambda k: draw_random_projection(k, self.state_width, m))(keys)
            self.projection = RandomProjection(W.astype(param_dtype),
                                               out_sharding=("heads", None, "kv"),
                                               eager_sharding=eager_sharding_active())
        else:
            self.projection = None
        if self.kernel_name == "astro" and self.positional:
            if pos_decay_init <= 0:
                raise ValueError(f"pos_decay_init: expected > 0, got {pos_decay_init}")
            M = init_positional_weights(rngs.params(), H, self.state_width, max_len,
                                        decay=pos_decay_init, target_std=pos_init_std,
                                        dtype=param_dtype)
            self.pos_M = param(M, ("heads", "kv", None))
            self.pos_log_decay = param(jnp.full((H,), math.log(pos_decay_init), param_dtype),
                                       ("heads",))
        else:
            self.pos_M = self.pos_log_decay = None

    # ---------------------------------------------------------------- helpers
    def _check_length(self, T: int) -> None:
        if self.max_len < T:
            raise ValueError(f"sequence length {T} exceeds the model's max_len (T_max) "
                             f"{self.max_len}; allowed: 1..{self.max_len}")

    def _qkv(self, x: Array) -> tuple[Array, Array, Array]:
        return self.query(x), self.key(x), self.value(x)

    def positional_keys(self) -> Array | None:
        """Raw astrocytic activity ``A [T_max, H, m]`` (Eq. 12), or None without the term."""
        if self.pos_M is None:
            return None
        decay = jnp.exp(self.pos_log_decay[...])
        A = jax.vmap(lambda M, s: astro_positional(M, decay=s, length=self.max_len))(
            self.pos_M[...], decay)  # [H, T_max, m]
        return jnp.transpose(A, (1, 0, 2))

    def _projection(self) -> Array | None:
        return None if self.projection is None else self.projection[...]

    def _astro(self, q: Array, k: Array, v: Array, *, mask: Array | None, pos_keys: Array | None,
               mode: str, initial_state: AstroState | None = None,
               return_state: bool = False) -> Any:
        fn = self.kernel or astro_attention
        return fn(q, k, v, causal=self.causal, alpha=self.alpha, sigmoid=self.sigmoid,
                  m_div=self.m_div, pos_keys=pos_keys, mask=mask, feature_map=self.feature_map,
                  projection=self._projection(), mode=mode, chunk_size=self.chunk_size,
                  eps=self.eps, initial_state=initial_state, return_state=return_state)

    def _softmax(self, q: Array, k: Array, v: Array, *, mask: Array | None) -> Array:
        fn = self.kernel or softmax_attention
        return fn(q, k, v, causal=self.causal, mask=mask)

    def _features(self, x: Array) -> Array:
        """``φ(x)`` for ``x [B, T, H, n]`` -> ``[B, T, H, m]``, in float32 or wider."""
        x = x.astype(accumulation_dtype(x.dtype))
        if self.feature_map == "elu1":
            return elu1(x)
        W = self._projection().astype(x.dtype)
        return jax.vmap(positive_random_features, in_axes=(2, 0), out_axes=2)(x, W)

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
        return jnp.sum(q_feat * calcium_drive(z, self.alpha), axis=-1)

    # ---------------------------------------------------------------- forward
    def __call__(self, x: Array, *, mask: Array | None = None,
                 return_calcium: bool = False) -> Array | tuple[Array, Array | None]:
        """Attention over a whole sequence.

        Args:
          x: ``[B, T, D]`` with ``T <= max_len``.
          mask: ``[B, T]`` bool, True = real token (padding neither writes nor is read).
          return_calcium: also return the calcium response ``[B, T, H]`` (None for softmax).

        Returns:
          ``[B, T, D]`` (and the calcium response with ``return_calcium``).
        """
        self._check_length(x.shape[1])
        q, k, v = self._qkv(x)
        if self.kernel_name == "softmax":
            y, c = self._softmax(q, k, v, mask=mask), None
        else:
            y = self._astro(q, k, v, mask=mask, pos_keys=self.positional_keys(), mode=self.mode)
            c = self.calcium(q, k, mask) if return_calcium else None
        out = self.out(y)
        return (out, c) if return_calcium else out

    # ---------------------------------------------------------------- generation
    def _require_causal(self, what: str) -> None:
        if not self.causal:
            raise ValueError(f"{what} needs a causal layer (causal=True); this one is not")

    def init_state(self, batch_size: int) -> RecurrentState | KVCache:
        """The empty decoding state for ``batch_size`` sequences (nothing written yet)."""
        self._require_causal("init_state")
        pos = jnp.zeros((), jnp.int32)
        H = self.num_heads
        if self.kernel_name == "softmax":
            dt = self.dtype or self.param_dtype
            return KVCache(k=jnp.zeros((batch_size, self.max_len, H, self.m), dt),
                           v=jnp.zeros((batch_size, self.max_len, H, self.d), dt), position=pos)
        acc = accumulation_dtype(self.dtype or self.param_dtype)
        state = AstroState(S=jnp.zeros((batch_size, H, self.state_width, self.d), acc),
                           z=jnp.zeros((batch_size, H, self.state_width), acc))
        return RecurrentState(astro=state, position=pos)

    def prefill(self, x: Array) -> tuple[Array, RecurrentState | KVCache]:
        """Causal attention over a prompt ``x [B, P, D]`` plus the decoding state after it.

        The astro family returns the kernel's final state (its mode, no re-run later); softmax
        fills a KV cache of ``T_max`` positions.

        Returns:
          ``(y [B, P, D], state)`` ready for :meth:`step` at position ``P``.
        """
        self._require_causal("prefill")
        B, P, _ = x.shape
        self._check_length(P)
        q, k, v = self._qkv(x)
        position = jnp.asarray(P, jnp.int32)
        if self.kernel_name == "softmax":
            y = self._softmax(q, k, v, mask=None)
            cache = self.init_state(B)
            state = KVCache(k=cache.k.at[:, :P].set(k.astype(cache.k.dtype)),
                            v=cache.v.at[:, :P].set(v.astype(cache.v.dtype)), position=position)
        else:
            y, astro = self._astro(q, k, v, mask=None, pos_keys=self.positional_keys(),
                                   mode=self.mode, return_state=True)
            state = RecurrentState(astro=astro, position=position)
        return self.out(y), state

    def step(self, x_t: Array, state: RecurrentState | KVCache
             ) -> tuple[Array, RecurrentState | KVCache]:
        """One token: ``x_t [B, D]`` at position ``state.position`` -> ``(y_t [B, D], state)``.

        Astro family: one recurrent kernel step, O(m·d) per head. Softmax: attends over the KV
        cache (O(T_max) per head). Positions past ``max_len - 1`` are not checked here (traced);
        :meth:`astroflax.models.AstroLM.generate` checks the length up front.
        """
        self._require_causal("step")
        q, k, v = self._qkv(x_t[:, None])  # [B, 1, H, *]
        pos = state.position
        if self.kernel_name == "softmax":
            kc = jax.lax.dynamic_update_slice_in_dim(state.k, k.astype(state.k.dtype), pos, 1)
            vc = jax.lax.dynamic_update_slice_in_dim(state.v, v.astype(state.v.dtype), pos, 1)
            scores = jnp.einsum("bqhm,bkhm->bhqk", q, kc.astype(q.dtype)) / math.sqrt(self.m)
            visible = (jnp.arange(self.max_len, dtype=pos.dtype) <= pos)[None, None, None, :]
            probs = jax.nn.softmax(jnp.where(visible, scores, -jnp.inf), axis=-1)
            y = jnp.einsum("bhqk,bkhd->bqhd", probs, vc.astype(probs.dtype)).astype(v.dtype)
            new_state: RecurrentState | KVCache = KVCache(k=kc, v=vc, position=pos + 1)
        else:
            A = self.positional_keys()
            row = None if A is None else jax.lax.dynamic_slice_in_dim(A, pos, 1)  # [1, H, m]
            y, astro = self._astro(q, k, v, mask=None, pos_keys=row, mode="recurrent",
                                   initial_state=state.astro, return_state=True)
            new_state = RecurrentState(astro=astro, position=pos + 1)
        return self.out(y)[:, 0], new_state
