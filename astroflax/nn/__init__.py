"""Flax NNX modules over the kernels: attention spec and layers, blocks, embeddings, sharding."""

from astroflax.nn.astro_attention import (
    AstroAttention,
    RandomProjection,
    RecurrentState,
    init_positional_weights,
)
from astroflax.nn.attention import DecodeState, make_attention
from astroflax.nn.blocks import (
    BlockStack,
    FeedForward,
    TransformerBlock,
)
from astroflax.nn.embed import (
    EMBED_SCALES,
    POS_EMBEDDINGS,
    AbsolutePositions,
    FrozenEmbedding,
    PatchEmbedding,
    TokenEmbedding,
    sinusoidal_positions,
)
from astroflax.nn.no_attention import NoAttention, PositionState
from astroflax.nn.sharding import LOGICAL_AXES, axis_rules, partitioned
from astroflax.nn.softmax_attention import KVCache, SoftmaxAttention
from astroflax.nn.spec import (
    ATTENTION_FIELDS,
    VARIANTS,
    AttentionSpec,
    attention_spec,
    parse_m_div,
)

__all__ = [
    "ATTENTION_FIELDS",
    "EMBED_SCALES",
    "LOGICAL_AXES",
    "POS_EMBEDDINGS",
    "VARIANTS",
    "AbsolutePositions",
    "AstroAttention",
    "AttentionSpec",
    "BlockStack",
    "DecodeState",
    "FeedForward",
    "FrozenEmbedding",
    "KVCache",
    "NoAttention",
    "PatchEmbedding",
    "PositionState",
    "RandomProjection",
    "RecurrentState",
    "SoftmaxAttention",
    "TokenEmbedding",
    "TransformerBlock",
    "attention_spec",
    "axis_rules",
    "init_positional_weights",
    "make_attention",
    "parse_m_div",
    "partitioned",
    "sinusoidal_positions",
]
