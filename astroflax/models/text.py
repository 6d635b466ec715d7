"""Sequence classifiers over token ids: one sequence (``AstroTextClassifier``) or a pair.

``AstroTextClassifier`` pools the encoder's outputs by a masked mean over real tokens (the
paper's IMDB model) or reads a learned classification token placed before the sequence (LRA's
``CLS`` pooling); ``AstroPairClassifier`` encodes two sequences with the same encoder and
classifies the pair from the two pooled vectors (LRA's two-tower Retrieval model).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array

from astroflax.models._common import Trunk, check_positive, masked_mean
from astroflax.nn.blocks import dense
from astroflax.nn.embed import TokenEmbedding
from astroflax.nn.sharding import eager_sharding_active
from astroflax.nn.spec import AttentionSpec

#: How a classifier turns ``h [B, T, D]`` into ``[B, D]``: the masked mean over real tokens, or
#: the output at a learned classification token placed before the sequence.
POOLINGS = ("mean", "cls")


class AstroTextClassifier(nnx.Module):
    """Tokens ``[B, T]`` -> logits ``[B, num_classes]`` (paper's IMDB model, docs/model.md §7).

    An encoder over token embeddings (optionally GloVe-initialised, projected ``E -> D``);
    padding (``tokens == pad_id`` unless a mask is given) is masked in attention and excluded
    from the pooling, so appending padding does not change the output. With ``pooling="cls"``
    a learned vector ``[D]`` is placed before the embedded tokens (position 0, never masked) and
    its output is classified; the encoder then holds ``max_len + 1`` positions.
    """

    def __init__(self, vocab_size: int, num_classes: int, *, max_len: int = 400,
                 features: int = 128, num_layers: int = 1, num_heads: int = 4,
                 embed_dim: int | None = None, freeze_embedding: bool = False,
                 pad_id: int = 0, attention: AttentionSpec | str = "astro",
                 mlp_dim: int | None = None, norm: str = "post", dropout: float = 0.0,
                 pos_embedding: str = "paper", embed_scale: str = "sqrt_d",
                 pooling: str = "mean", dtype: Any = None, param_dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):
        """Builds the model.

        Args:
          vocab_size: token vocabulary ``V`` (fixed by the data).
          num_classes: output classes (fixed by the data).
          max_len: longest sequence ``T_max`` (fixed by the data's length).
          features: as in :class:`astroflax.models.AstroViT`.
          num_layers: as in :class:`astroflax.models.AstroViT`.
          num_heads: as in :class:`astroflax.models.AstroViT`.
          embed_dim: token-table width ``E`` (None: ``D``; projected ``E -> D`` otherwise).
          freeze_embedding: keep the token table fixed (e.g. pretrained GloVe vectors).
          pad_id: the padding token (masked when no mask is passed).
          attention: as in :class:`astroflax.models.AstroViT`.
          mlp_dim: as in :class:`astroflax.models.AstroViT`.
          norm: as in :class:`astroflax.models.AstroViT`.
          dropout: as in :class:`astroflax.models.AstroViT`.
          pos_embedding: as in :class:`astroflax.models.AstroViT`.
          embed_scale: see :class:`astroflax.models.AstroLM`.
          pooling: classifier pooling: mean (masked mean over real tokens) | cls (a learned
            classification token before the sequence, as LRA's CLS pooling).
          dtype: as in :class:`astroflax.models.AstroViT`.
          param_dtype: as in :class:`astroflax.models.AstroViT`.
          rngs: as in :class:`astroflax.models.AstroViT`.
        """
        check_positive(features=features, embed_dim=embed_dim, vocab_size=vocab_size,
                       num_classes=num_classes)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        self.pad_id, self.pooling, self.max_len = pad_id, pooling, max_len
        # The classification token's vector, in the embedded tokens' space (std as the table's
        # rows, so it is scaled and positioned like a token).
        self.cls = (nnx.Param(nnx.initializers.normal(features ** -0.5)(
            rngs.params(), (features,), param_dtype), out_sharding=("embed",),
            eager_sharding=eager_sharding_active()) if pooling == "cls" else None)
        self.embed = TokenEmbedding(vocab_size, features, embed_dim=embed_dim,
                                    freeze=freeze_embedding,
                                    dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.trunk = Trunk(features=features, num_layers=num_layers, num_heads=num_heads,
                           max_len=max_len + (pooling == "cls"), causal=False,
                           attention=attention, mlp_dim=mlp_dim,
                           norm=norm, dropout=dropout, pos_embedding=pos_embedding,
                           embed_scale=embed_scale, dtype=dtype, param_dtype=param_dtype,
                           rngs=rngs)
        self.head = dense(features, num_classes, ("embed", None), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)

    def load_pretrained(self, pretrained: dict[str, np.ndarray]) -> None:
        """Copies a dataset's pretrained tables in: ``{"embedding": [V, E], "found": [V]}``."""
        self.embed.load_vectors(pretrained["embedding"], pretrained["found"])

    def encode(self, tokens: Array, mask: Array | None = None, *,
               capture_calcium: bool = False) -> tuple[Array, dict[str, Any]]:
        """``tokens [B, T]`` int, ``mask [B, T]`` bool -> ``(pooled [B, D], aux)``."""
        if self.max_len < tokens.shape[1]:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds the model's max_len "
                             f"(T_max) {self.max_len}; allowed: 1..{self.max_len}")
        if mask is None:
            mask = tokens != self.pad_id
        x = self.embed(tokens)
        if self.cls is not None:
            cls = jnp.broadcast_to(self.cls[...].astype(x.dtype), (x.shape[0], 1, x.shape[2]))
            x = jnp.concatenate([cls, x], axis=1)
            mask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)
        h, aux = self.trunk(x, mask=mask, capture_calcium=capture_calcium)
        return (h[:, 0] if self.cls is not None else masked_mean(h, mask)), aux

    def __call__(self, tokens: Array, *, mask: Array | None = None,
                 capture_calcium: bool = False) -> tuple[Array, dict[str, Any]]:
        """``tokens [B, T]`` int, ``mask [B, T]`` bool -> ``(logits [B, num_classes], aux)``."""
        pooled, aux = self.encode(tokens, mask, capture_calcium=capture_calcium)
        return self.head(pooled), aux


class AstroPairClassifier(AstroTextClassifier):
    """Token pairs ``[B, 2, T]`` -> logits ``[B, num_classes]`` (LRA's two-tower Retrieval model).

    Both sequences go through the same encoder (:class:`AstroTextClassifier`'s, one batch of
    ``2B`` rows) and are pooled to ``u, v [B, D]``; the head is LRA's dual classifier with its
    ``NLI`` interaction: ``[u, v, u·v, u − v] [B, 4D]`` -> Dense(``F``) -> ReLU ->
    Dense(``F/2``) -> ReLU -> Dense(``num_classes``), with ``F = mlp_dim`` (None: ``4·D``).
    """

    def __init__(self, vocab_size: int, num_classes: int, *, features: int = 128,
                 mlp_dim: int | None = None, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs, **kwargs: Any):
        """Builds the model.

        Args:
          vocab_size: as in :class:`AstroTextClassifier`.
          num_classes: as in :class:`AstroTextClassifier`.
          features: as in :class:`astroflax.models.AstroViT`.
          mlp_dim: as in :class:`astroflax.models.AstroViT`.
          dtype: as in :class:`astroflax.models.AstroViT`.
          param_dtype: as in :class:`astroflax.models.AstroViT`.
          rngs: as in :class:`astroflax.models.AstroViT`.
          **kwargs: the other arguments of :class:`AstroTextClassifier`.
        """
        super().__init__(vocab_size, num_classes, features=features, mlp_dim=mlp_dim,
                         dtype=dtype, param_dtype=param_dtype, rngs=rngs, **kwargs)
        F = mlp_dim or 4 * features
        if F < 2:
            raise ValueError(f"mlp_dim: expected >= 2 for the pair head, got {mlp_dim!r}")
        self.head = PairHead(features, F, num_classes, dtype=dtype, param_dtype=param_dtype,
                             rngs=rngs)

    def __call__(self, tokens: Array, *, mask: Array | None = None,
                 capture_calcium: bool = False) -> tuple[Array, dict[str, Any]]:
        """``tokens [B, 2, T]`` int, ``mask [B, 2, T]`` bool -> ``(logits [B, C], aux)``."""
        if tokens.ndim != 3 or tokens.shape[1] != 2:
            raise ValueError(f"AstroPairClassifier takes token pairs [B, 2, T], got shape "
                             f"{tokens.shape}")
        B, _, T = tokens.shape
        flat_mask = None if mask is None else mask.reshape(2 * B, T)
        pooled, aux = self.encode(tokens.reshape(2 * B, T), flat_mask,
                                  capture_calcium=capture_calcium)
        pooled = pooled.reshape(B, 2, -1)
        return self.head(pooled[:, 0], pooled[:, 1]), aux


class PairHead(nnx.Module):
    """LRA's dual classifier (``NLI`` interaction): ``u, v [B, D]`` -> logits ``[B, C]``."""

    def __init__(self, features: int, mlp_dim: int, num_classes: int, *, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        """``features`` ``D``, hidden widths ``mlp_dim`` and ``mlp_dim // 2``, ``num_classes``."""
        kw = {"dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        self.hidden1 = dense(4 * features, mlp_dim, (None, "mlp"), **kw)
        self.hidden2 = dense(mlp_dim, mlp_dim // 2, ("mlp", None), **kw)
        self.out = dense(mlp_dim // 2, num_classes, (None, None), **kw)

    def __call__(self, u: Array, v: Array) -> Array:
        """``u, v [B, D]`` -> ``[B, num_classes]``."""
        x = jnp.concatenate([u, v, u * v, u - v], axis=-1)
        return self.out(nnx.relu(self.hidden2(nnx.relu(self.hidden1(x)))))
