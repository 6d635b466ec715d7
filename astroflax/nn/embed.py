"""Embeddings: tokens (learned or GloVe-initialised), image patches (3×3 conv stem), positions."""

from __future__ import annotations

import logging
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array

from astroflax.nn.sharding import eager_sharding_active, partitioned
from astroflax.nn.spec import AttentionSpec, attention_spec

_log = logging.getLogger(__name__)

#: Absolute positional information of a model; ``"paper"`` is the paper's own mix (below).
POS_EMBEDDINGS = ("paper", "none", "sinusoidal", "learned")
#: Scale of token embeddings before absolute positions are added (token-embedding models).
EMBED_SCALES = ("sqrt_d", "one")


class FrozenEmbedding(nnx.Variable):
    """A fixed embedding table (e.g. frozen GloVe vectors): not an ``nnx.Param``, not trained."""


class TokenEmbedding(nnx.Module):
    """Token ids ``[B, T]`` -> ``[B, T, D]``: a table ``[V, E]``, then ``E -> D`` if ``E != D``.

    A pretrained table (e.g. GloVe 840B 300-d, ``embed_dim=300``, for the paper's IMDB model
    with ``D = 128``) is copied in after the model is built, by :meth:`load_vectors`: reading a
    file is the data's job, and a table inside ``__init__`` would be read again under every
    ``eval_shape`` / ``jit`` of the constructor and baked into the init program.
    """

    def __init__(self, vocab_size: int, features: int, *, embed_dim: int | None = None,
                 freeze: bool = False, dtype: Any = None, param_dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):
        """Builds the table.

        Args:
          vocab_size: ``V``. features: model width ``D``. embed_dim: table width ``E``
            (default ``D``).
          freeze: keep the table fixed (a :class:`FrozenEmbedding`, skipped by optimizers).
          dtype, param_dtype: computation and parameter dtypes. rngs: initialisation.
        """
        E = embed_dim or features
        self.vocab_size, self.features, self.embed_dim = vocab_size, features, E
        self.dtype = dtype
        names = ("vocab", "embed") if features == E else ("vocab", None)
        table = nnx.initializers.normal(E ** -0.5)(rngs.params(), (vocab_size, E), param_dtype)
        kind = FrozenEmbedding if freeze else nnx.Param
        self.table = kind(table, out_sharding=names, eager_sharding=eager_sharding_active())
        self.projection = None if features == E else nnx.Linear(
            E, features, dtype=dtype, param_dtype=param_dtype,
            kernel_init=partitioned(nnx.initializers.lecun_normal(), (None, "embed")),
            bias_init=partitioned(nnx.initializers.zeros_init(), ("embed",)), rngs=rngs)

    def load_vectors(self, vectors: np.ndarray, found: np.ndarray) -> None:
        """Replaces the table's rows where ``found`` by ``vectors`` (the others keep their init).

        Args:
          vectors: ``[V, E]`` float (e.g. from :func:`astroflax.data.glove.load_glove`).
          found: ``[V]`` bool, the rows the pretrained table has.

        Raises:
          ValueError: ``vectors`` is not ``[vocab_size, embed_dim]`` (says which it is).
        """
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.embed_dim:
            raise ValueError(f"pretrained vectors have dimension {vectors.shape[-1]}, but the "
                             f"embedding expects embed_dim={self.embed_dim}; allowed: "
                             f"{self.embed_dim}-d vectors (or set embed_dim={vectors.shape[-1]})")
        if vectors.shape[0] != self.vocab_size or np.shape(found) != (self.vocab_size,):
            raise ValueError(f"the pretrained table needs vocab_size={self.vocab_size} rows "
                             f"(one per token id), got {vectors.shape[0]}")
        old = self.table[...]
        new = jnp.where(jnp.asarray(found)[:, None], jnp.asarray(vectors, old.dtype), old)
        # Keeps the stored layout (an FSDP-sharded table stays sharded).
        self.table[...] = jax.device_put(new, old.sharding) if hasattr(old, "sharding") else new
        _log.info("pretrained vectors: %d of %d tokens found", int(np.sum(found)),
                  self.vocab_size)

    def __call__(self, tokens: Array) -> Array:
        """``tokens [...]`` int -> ``[..., D]``."""
        x = jnp.take(self.table[...], tokens, axis=0)
        if self.dtype is not None:
            x = x.astype(self.dtype)
        return x if self.projection is None else self.projection(x)

    def attend(self, h: Array) -> Array:
        """Tied output logits ``h [..., D] @ tableᵀ -> [..., V]`` (needs ``embed_dim == D``)."""
        table = self.table[...]
        return jnp.einsum("...d,vd->...v", h, table.astype(h.dtype))


def sinusoidal_positions(length: int, features: int, dtype: Any = jnp.float32) -> Array:
    """The Transformer's fixed sinusoidal table ``[length, features]`` (sin on even, cos on odd)."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    freq = np.exp(-math.log(10000.0) * np.arange(0, features, 2, dtype=np.float64) / features)
    table = np.zeros((length, features), np.float64)
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq)[:, : features // 2]
    return jnp.asarray(table, dtype)


def resolve_pos_embedding(pos_embedding: str, attention: AttentionSpec | str) -> str:
    """The absolute-position kind ``pos_embedding`` stands for, given the attention spec.

    ``"paper"`` is the paper's own mix: ``"none"`` for specs with the astrocytic positional
    term (astro, astro_no_nonlin: their positions come from Eq. 12), ``"sinusoidal"`` for every
    other (parameter-free, so variants of one preset have equal parameter counts). ``"none"``,
    ``"sinusoidal"`` and ``"learned"`` apply to every variant alike (the astrocytic term, part
    of the variant, stays where the variant has it).

    Raises:
      ValueError: an unknown kind, listing the allowed ones.
    """
    if pos_embedding not in POS_EMBEDDINGS:
        raise ValueError(f"pos_embedding: expected one of {POS_EMBEDDINGS}, got {pos_embedding!r}")
    if pos_embedding != "paper":
        return pos_embedding
    return "none" if attention_spec(attention).has_positional_term else "sinusoidal"


def embed_scale_factor(embed_scale: str, features: int) -> float:
    """The multiplier of token embeddings: ``√D`` for ``"sqrt_d"``, 1 for ``"one"``.

    Raises:
      ValueError: an unknown name, listing the allowed ones.
    """
    if embed_scale not in EMBED_SCALES:
        raise ValueError(f"embed_scale: expected one of {EMBED_SCALES}, got {embed_scale!r}")
    return math.sqrt(features) if embed_scale == "sqrt_d" else 1.0


class AbsolutePositions(nnx.Module):
    """Adds absolute positions to ``x [B, T, D]``: learned ``[T_max, D]`` or sinusoidal."""

    def __init__(self, max_len: int, features: int, *, kind: str = "learned",
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        """``kind``: ``"learned"`` (a ``(None, "embed")`` parameter) or ``"sinusoidal"`` (fixed)."""
        if kind not in ("learned", "sinusoidal"):
            raise ValueError(f"kind: expected 'learned' or 'sinusoidal', got {kind!r}")
        self.kind, self.max_len, self.features = kind, max_len, features
        self.param_dtype = param_dtype
        if kind == "learned":
            init = partitioned(nnx.initializers.normal(0.02), (None, "embed"))
            self.table = nnx.Param(init(rngs.params(), (max_len, features), param_dtype))
        else:
            self.table = None  # a constant, recomputed when traced

    def __call__(self, x: Array, *, start: Array | int = 0) -> Array:
        """``x [B, T, D]`` + positions ``start .. start+T-1`` (``start`` may be traced)."""
        table = (self.table[...] if self.table is not None else
                 sinusoidal_positions(self.max_len, self.features, self.param_dtype))
        rows = jax.lax.dynamic_slice_in_dim(table, start, x.shape[1])
        return x + rows[None].astype(x.dtype)


class PatchEmbedding(nnx.Module):
    """Images ``[B, H, W, C]`` -> tokens ``[B, (H/p)(W/p), D]``: 3×3 conv stem, then p×p patches.

    The paper's CIFAR-10 tokenizer is "a 3×3 convolution stem, patch size 2"; astroflax reads it
    as ``Conv3×3(C -> D, SAME) -> ReLU -> Conv p×p stride p (D -> D)`` (the activation and the
    stem width are not stated in the paper).
    """

    def __init__(self, in_channels: int, features: int, *, patch_size: int = 2,
                 stem: bool = True, dtype: Any = None, param_dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):
        """Builds the stem (optional) and the patch projection."""
        self.patch_size = patch_size

        def conv(cin: int, cout: int, k: int, stride: int, padding: str) -> nnx.Conv:
            return nnx.Conv(cin, cout, (k, k), strides=(stride, stride), padding=padding,
                            dtype=dtype, param_dtype=param_dtype,
                            kernel_init=partitioned(nnx.initializers.lecun_normal(),
                                                    (None, None, None, "embed")),
                            bias_init=partitioned(nnx.initializers.zeros_init(), ("embed",)),
                            rngs=rngs)

        self.stem = conv(in_channels, features, 3, 1, "SAME") if stem else None
        self.patch = conv(features if stem else in_channels, features, patch_size, patch_size,
                          "VALID")

    def __call__(self, images: Array) -> Array:
        """``images [B, H, W, C]`` -> ``[B, (H/p)·(W/p), D]``."""
        _B, H, W, _C = images.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} must be divisible by patch_size={p}")
        x = images if self.stem is None else jax.nn.relu(self.stem(images))
        x = self.patch(x)
        return x.reshape(x.shape[0], -1, x.shape[-1])
