"""Embeddings: tokens (learned or GloVe-initialised), image patches (3×3 conv stem), positions."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
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


def load_glove(path: str | Path, vocab: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads a GloVe-format text file (``word v_1 ... v_dim`` per line) for a vocabulary.

    Words containing spaces (GloVe 840B has a few) are handled by taking the last ``dim``
    fields as the vector. A word2vec-style header line (``count dim``) is skipped. Lookup is
    exact first, then lower-cased.

    Args:
      path: the text file. vocab: token strings indexed by token id (``len = V``).
      dim: the expected vector dimension.

    Returns:
      ``(vectors [V, dim] float32 (zeros where missing), found [V] bool)``.

    Raises:
      ValueError: the file's vectors do not have ``dim`` components (says which it has), or the
        file is empty.
    """
    index = {word: i for i, word in enumerate(vocab)}
    lower = {}
    for i, word in enumerate(vocab):
        lower.setdefault(word.lower(), i)
    vectors = np.zeros((len(vocab), dim), np.float32)
    found = np.zeros((len(vocab),), bool)
    exact = np.zeros((len(vocab),), bool)
    file_dim = None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if line_no == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if file_dim is None:
                file_dim = len(parts) - 1
                if file_dim != dim:
                    raise ValueError(
                        f"GloVe file {path}: vectors have dimension {file_dim}, but the "
                        f"embedding expects embed_dim={dim}; allowed: a file of {dim}-d vectors "
                        f"(or set embed_dim={file_dim})")
            if len(parts) < dim + 1:
                continue
            word = " ".join(parts[:-dim])
            i = index.get(word)
            is_exact = i is not None
            if i is None:
                i = lower.get(word.lower())
            if i is None or exact[i] or (found[i] and not is_exact):
                continue
            vectors[i] = np.asarray(parts[-dim:], np.float32)
            found[i], exact[i] = True, is_exact
    if file_dim is None:
        raise ValueError(f"GloVe file {path} holds no vectors")
    return vectors, found


class TokenEmbedding(nnx.Module):
    """Token ids ``[B, T]`` -> ``[B, T, D]``: a table ``[V, E]``, then ``E -> D`` if ``E != D``.

    With ``glove_path`` the table starts from the file's vectors for the tokens it has (the
    others keep the random init), e.g. GloVe 840B 300-d (``embed_dim=300``) for the paper's
    IMDB model with ``D = 128``.
    """

    def __init__(self, vocab_size: int, features: int, *, embed_dim: int | None = None,
                 glove_path: str | Path | None = None, vocab: Sequence[str] | None = None,
                 freeze: bool = False, dtype: Any = None, param_dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):
        """Builds the table.

        Args:
          vocab_size: ``V``. features: model width ``D``. embed_dim: table width ``E``
            (default ``D``).
          glove_path: a GloVe-format text file to initialise the table from (needs ``vocab``).
          vocab: token strings indexed by id, for the GloVe lookup.
          freeze: keep the table fixed (a :class:`FrozenEmbedding`, skipped by optimizers).
          dtype, param_dtype: computation and parameter dtypes. rngs: initialisation.

        Raises:
          ValueError: GloVe file of the wrong dimension, or ``glove_path`` without a matching
            ``vocab``.
        """
        E = embed_dim or features
        self.vocab_size, self.features, self.embed_dim = vocab_size, features, E
        self.dtype = dtype
        names = ("vocab", "embed") if features == E else ("vocab", None)
        table = nnx.initializers.normal(E ** -0.5)(rngs.params(), (vocab_size, E), param_dtype)
        if glove_path is not None:
            if vocab is None or len(vocab) != vocab_size:
                raise ValueError(f"glove_path needs vocab: {vocab_size} token strings indexed by "
                                 f"id, got {None if vocab is None else len(vocab)}")
            vectors, found = load_glove(glove_path, vocab, E)
            _log.info("GloVe %s: %d of %d tokens found", glove_path, int(found.sum()), vocab_size)
            table = jnp.where(jnp.asarray(found)[:, None], jnp.asarray(vectors, param_dtype), table)
        kind = FrozenEmbedding if freeze else nnx.Param
        self.table = kind(table, out_sharding=names, eager_sharding=eager_sharding_active())
        self.projection = None if features == E else nnx.Linear(
            E, features, dtype=dtype, param_dtype=param_dtype,
            kernel_init=partitioned(nnx.initializers.lecun_normal(), (None, "embed")),
            bias_init=partitioned(nnx.initializers.zeros_init(), ("embed",)), rngs=rngs)

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
