"""Flax NNX modules over the kernels: attention, blocks, embeddings, sharding annotations."""

from astroflax.nn.attention import (
    VARIANTS,
    AstroAttention,
    KVCache,
    RandomProjection,
    RecurrentState,
    check_variant,
    init_positional_weights,
)
from astroflax.nn.blocks import (
    BlockStack,
    DecoderBlock,
    EncoderBlock,
    FeedForward,
    TransformerBlock,
)
from astroflax.nn.embed import (
    AbsolutePositions,
    FrozenEmbedding,
    PatchEmbedding,
    TokenEmbedding,
    load_glove,
    sinusoidal_positions,
)
from astroflax.nn.sharding import LOGICAL_AXES, axis_rules, partitioned

__all__ = [
    "LOGICAL_AXES",
    "VARIANTS",
    "AbsolutePositions",
    "AstroAttention",
    "BlockStack",
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "FrozenEmbedding",
    "KVCache",
    "PatchEmbedding",
    "RandomProjection",
    "RecurrentState",
    "TokenEmbedding",
    "TransformerBlock",
    "axis_rules",
    "check_variant",
    "init_positional_weights",
    "load_glove",
    "partitioned",
    "sinusoidal_positions",
]
