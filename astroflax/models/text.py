"""``AstroTextClassifier``: token ids -> class logits, masked mean pooling over real tokens."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array

from astroflax.models._common import Trunk, check_positive, masked_mean
from astroflax.nn.blocks import dense
from astroflax.nn.embed import TokenEmbedding
from astroflax.nn.spec import AttentionSpec


class AstroTextClassifier(nnx.Module):
    """Tokens ``[B, T]`` -> logits ``[B, num_classes]`` (paper's IMDB model, docs/model.md §7).

    An encoder over token embeddings (optionally GloVe-initialised, projected ``E -> D``);
    padding (``tokens == pad_id`` unless a mask is given) is masked in attention and excluded
    from the mean, so appending padding does not change the output.
    """

    def __init__(self, vocab_size: int, num_classes: int, *, max_len: int = 400,
                 features: int = 128, num_layers: int = 1, num_heads: int = 4,
                 embed_dim: int | None = None, freeze_embedding: bool = False,
                 pad_id: int = 0, attention: AttentionSpec | str = "astro",
                 mlp_dim: int | None = None, norm: str = "post", dropout: float = 0.0,
                 pos_embedding: str = "paper", embed_scale: str = "sqrt_d", dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
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
          dtype: as in :class:`astroflax.models.AstroViT`.
          param_dtype: as in :class:`astroflax.models.AstroViT`.
          rngs: as in :class:`astroflax.models.AstroViT`.
        """
        check_positive(features=features, embed_dim=embed_dim, vocab_size=vocab_size,
                       num_classes=num_classes)
        self.pad_id = pad_id
        self.embed = TokenEmbedding(vocab_size, features, embed_dim=embed_dim,
                                    freeze=freeze_embedding,
                                    dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.trunk = Trunk(features=features, num_layers=num_layers, num_heads=num_heads,
                           max_len=max_len, causal=False, attention=attention, mlp_dim=mlp_dim,
                           norm=norm, dropout=dropout, pos_embedding=pos_embedding,
                           embed_scale=embed_scale, dtype=dtype, param_dtype=param_dtype,
                           rngs=rngs)
        self.head = dense(features, num_classes, ("embed", None), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)

    def load_pretrained(self, pretrained: dict[str, np.ndarray]) -> None:
        """Copies a dataset's pretrained tables in: ``{"embedding": [V, E], "found": [V]}``."""
        self.embed.load_vectors(pretrained["embedding"], pretrained["found"])

    def __call__(self, tokens: Array, *, mask: Array | None = None,
                 capture_calcium: bool = False) -> tuple[Array, dict[str, Any]]:
        """``tokens [B, T]`` int, ``mask [B, T]`` bool -> ``(logits [B, num_classes], aux)``."""
        self.trunk.check_length(tokens.shape[1])
        if mask is None:
            mask = tokens != self.pad_id
        h, aux = self.trunk(self.embed(tokens), mask=mask, capture_calcium=capture_calcium)
        return self.head(masked_mean(h, mask)), aux
