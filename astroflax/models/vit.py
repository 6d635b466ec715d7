"""``AstroViT``: image classification with a 3×3 conv stem, 2×2 patches and average pooling."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax import Array

from astroflax.models._common import Trunk, check_positive
from astroflax.nn.blocks import dense
from astroflax.nn.embed import PatchEmbedding
from astroflax.nn.spec import AttentionSpec


class AstroViT(nnx.Module):
    """Images ``[B, H, W, C]`` -> logits ``[B, num_classes]`` (the paper's CIFAR-10 model).

    The paper's setup is docs/model.md §7. Patch tokens (``T = (H/p)·(W/p)``, the model's
    ``T_max``) pass an encoder of :class:`astroflax.nn.TransformerBlock` s; the outputs are
    averaged over tokens and a linear head gives the logits.
    """

    def __init__(self, num_classes: int, *, image_size: int = 32, in_channels: int = 3,
                 patch_size: int = 2, stem: bool = True, features: int = 256,
                 num_layers: int = 8, num_heads: int = 8,
                 attention: AttentionSpec | str = "astro", mlp_dim: int | None = None,
                 norm: str = "post", dropout: float = 0.0, pos_embedding: str = "paper",
                 dtype: Any = None, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        """Builds the model.

        Args:
          num_classes: output classes (fixed by the data).
          image_size: square input side in pixels (fixed by the data; ``T_max`` follows).
          in_channels: image channels (fixed by the data).
          patch_size: ViT patch side ``p`` (images: ``(image_size / p)²`` tokens).
          stem: the 3×3 conv stem before patching (the paper's CIFAR-10 model).
          features: model width ``D``.
          num_layers: transformer blocks.
          num_heads: attention heads ``H``.
          attention: attention variant of every layer: a name of :data:`astroflax.nn.VARIANTS`
            (astro, softmax, linear, kozachkov_*, none, ...) or an
            :class:`astroflax.nn.AttentionSpec`. ``m_div="paper"`` in it resolves to ``m``
            here: :func:`astroflax.models.create_model` applies a preset's factor.
          mlp_dim: FFN hidden width (None: ``4·D``, the paper does not state it; 0: no FFN
            sub-layer, as Zoology's recall models).
          norm: post (paper Eq. 2-3) | pre (pre-LayerNorm with a final LayerNorm).
          dropout: dropout rate in [0, 1) after embeddings and in every block.
          pos_embedding: absolute positions: paper (the paper's mix: none for specs with the
            astrocytic positional term, sinusoidal otherwise) | none | sinusoidal | learned
            (std 0.02 at init); patch tokens are added to it unscaled.
          dtype: computation dtype (None: the inputs').
          param_dtype: parameter dtype.
          rngs: initialisation and dropout streams.
        """
        check_positive(features=features, patch_size=patch_size, image_size=image_size,
                       in_channels=in_channels, num_classes=num_classes)
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be divisible by "
                             f"patch_size={patch_size}")
        self.image_size = image_size
        self.patches = PatchEmbedding(in_channels, features, patch_size=patch_size, stem=stem,
                                      dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.trunk = Trunk(features=features, num_layers=num_layers, num_heads=num_heads,
                           max_len=(image_size // patch_size) ** 2, causal=False,
                           attention=attention, mlp_dim=mlp_dim, norm=norm, dropout=dropout,
                           pos_embedding=pos_embedding, embed_scale=None, dtype=dtype,
                           param_dtype=param_dtype, rngs=rngs)
        self.head = dense(features, num_classes, ("embed", None), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)

    def __call__(self, images: Array, *, capture_calcium: bool = False
                 ) -> tuple[Array, dict[str, Any]]:
        """``images [B, H, W, C]`` -> ``(logits [B, num_classes], aux)`` (see ``Trunk``)."""
        x = self.patches(images)
        h, aux = self.trunk(x, capture_calcium=capture_calcium)
        return self.head(jnp.mean(h, axis=1)), aux
