"""The model zoo: ``AstroViT``, ``AstroTextClassifier``, ``AstroLM`` and the preset registry.

One line asks for any model of the paper, its predecessor or an ablation::

    model = create_model("paper_cifar10", attention="kozachkov_iso")
    logits, aux = model(images)

Presets (docs/model.md §7; where the paper is silent astroflax chooses, as noted per preset):

* ``paper_imdb``: encoder, 1 layer, 4 heads, ``D = 128``, length 400, ``m_div = 500·D``,
  GloVe 300-d input vectors projected to ``D`` (vocabulary 20 000: not stated in the paper).
* ``paper_cifar10``: 3×3 conv stem, patch 2 (256 tokens), 8 layers, 8 heads, ``D = 256``,
  average pooling, ``m_div = 500·D``.
* ``paper_wikitext2``: decoder, 1 layer, 6 heads, ``D = 768``, length 512, ``m_div = 100·D``,
  GPT-2 vocabulary 50 257, tied input/output embeddings (GPT-2's choice).
* ``tiny_imdb``, ``tiny_cifar10``, ``tiny_wikitext2``: the same recipes, small enough for tests.

All presets: post-LN (paper Eq. 2–3), FFN width ``4·D`` and dropout 0.1 for the paper presets
(neither stated in the paper), 0 for the tiny ones. ``m_div`` is stored per preset as a factor
of the width, so ``create_model("paper_imdb", features=64)`` gets ``m_div = 500·64`` unless
``m_div=`` is given (in any form of :class:`astroflax.nn.AttentionSpec`: ``"m"``, ``"500D"``,
``64000``; the variants that fix it, ``linear`` and ``kozachkov_rf``, keep ``1``).

Fields of the attention spec are accepted as keywords too and replace the variant's
(``create_model("tiny_imdb", attention="kozachkov_iso", alpha=0.5, mode="parallel")``).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from astroflax.models.lm import AstroLM
from astroflax.models.settings import SETTINGS, Setting, constructor_parameters, keeps_preset
from astroflax.models.text import AstroPairClassifier, AstroTextClassifier
from astroflax.models.vit import AstroViT
from astroflax.nn.sharding import LOGICAL_AXES
from astroflax.nn.spec import ATTENTION_FIELDS, VARIANTS, attention_spec

#: name -> (model class, keyword arguments (attention-spec fields among them), m_div factor of
#: the width or None).
PRESETS: dict[str, tuple[type[nnx.Module], dict[str, Any], float | None]] = {
    "paper_imdb": (AstroTextClassifier, {
        "vocab_size": 20_000, "num_classes": 2, "max_len": 400, "features": 128,
        "num_layers": 1, "num_heads": 4, "embed_dim": 300, "dropout": 0.1}, 500.0),
    "paper_cifar10": (AstroViT, {
        "num_classes": 10, "image_size": 32, "in_channels": 3, "patch_size": 2,
        "features": 256, "num_layers": 8, "num_heads": 8, "dropout": 0.1}, 500.0),
    "paper_wikitext2": (AstroLM, {
        "vocab_size": 50_257, "max_len": 512, "features": 768, "num_layers": 1,
        "num_heads": 6, "tie_embeddings": True, "dropout": 0.1}, 100.0),
    "tiny_imdb": (AstroTextClassifier, {
        "vocab_size": 50, "num_classes": 2, "max_len": 16, "features": 16, "num_layers": 1,
        "num_heads": 2, "embed_dim": 12, "chunk_size": 8}, 500.0),
    "tiny_cifar10": (AstroViT, {
        "num_classes": 10, "image_size": 8, "in_channels": 3, "patch_size": 2,
        "features": 16, "num_layers": 2, "num_heads": 2}, 500.0),
    "tiny_wikitext2": (AstroLM, {
        "vocab_size": 50, "max_len": 16, "features": 16, "num_layers": 2, "num_heads": 2,
        "tie_embeddings": True, "chunk_size": 4}, 100.0),
    # Long range (LRA's released transformer_base configs; see docs/tasks.md). LRA's qkv width
    # equals the model width here except Pathfinder (LRA: qkv 16 at D = 32); ours is always D.
    "lra_listops": (AstroTextClassifier, {
        "vocab_size": 16, "num_classes": 10, "max_len": 2000, "features": 512,
        "num_layers": 6, "num_heads": 8, "mlp_dim": 2048, "pooling": "cls", "dropout": 0.1},
        500.0),
    "lra_text": (AstroTextClassifier, {
        "vocab_size": 257, "num_classes": 2, "max_len": 4000, "features": 256,
        "num_layers": 4, "num_heads": 4, "mlp_dim": 1024, "pooling": "cls", "dropout": 0.1},
        500.0),
    "lra_retrieval": (AstroPairClassifier, {
        "vocab_size": 257, "num_classes": 2, "max_len": 4000, "features": 128,
        "num_layers": 4, "num_heads": 4, "mlp_dim": 512, "pooling": "cls", "dropout": 0.1},
        500.0),
    "lra_image": (AstroTextClassifier, {
        "vocab_size": 256, "num_classes": 10, "max_len": 1024, "features": 32,
        "num_layers": 1, "num_heads": 1, "mlp_dim": 64, "pooling": "cls", "dropout": 0.3,
        "pos_embedding": "learned", "pad_id": -1}, 500.0),
    "lra_pathfinder": (AstroTextClassifier, {
        "vocab_size": 256, "num_classes": 2, "max_len": 1024, "features": 32,
        "num_layers": 4, "num_heads": 4, "mlp_dim": 32, "pooling": "mean", "dropout": 0.2,
        "pos_embedding": "learned", "pad_id": -1}, 500.0),
    # Zoology's MQAR model: 2 layers, no MLP, learned positions, one head, tied embeddings
    # (vocabulary and length fixed by the data; the CPU setting by default, docs/tasks.md).
    "mqar": (AstroLM, {
        "vocab_size": 256, "max_len": 64, "features": 64, "num_layers": 2, "num_heads": 1,
        "mlp_dim": 0, "pos_embedding": "learned", "tie_embeddings": True}, 100.0),
    # The CPU tier of ListOps (docs/tasks.md): about a thousand steps in 20 minutes on 2 cores.
    "small_listops": (AstroTextClassifier, {
        "vocab_size": 16, "num_classes": 10, "max_len": 256, "features": 64,
        "num_layers": 2, "num_heads": 4, "mlp_dim": 128, "pooling": "mean"}, 500.0),
}


def list_models() -> list[str]:
    """The preset names accepted by :func:`create_model`, sorted."""
    return sorted(PRESETS)


def model_kwargs(name: str, **overrides: Any) -> tuple[type[nnx.Module], dict[str, Any]]:
    """The class and full keyword arguments (minus ``rngs``) that ``name`` plus overrides give.

    Raises:
      ValueError: an unknown preset, or an override the model does not accept (listing both
        the valid names).
    """
    if name not in PRESETS:
        raise ValueError(f"name: expected one of the presets, got {name!r}; allowed: "
                         f"{list_models()}")
    cls, preset, factor = PRESETS[name]
    accepted = [p for p in constructor_parameters(cls) if p != "rngs"]
    unknown = sorted(set(overrides) - set(accepted) - set(ATTENTION_FIELDS))
    if unknown:
        raise ValueError(f"{name} ({cls.__name__}) does not accept {unknown}; allowed: "
                         f"{sorted(accepted + list(ATTENTION_FIELDS))}")
    kwargs = {k: v for k, v in {**preset, **overrides}.items() if k not in ATTENTION_FIELDS}
    attention = kwargs.get("attention", "astro")
    # A preset's attention settings (a chunk size) refine a variant named by string; a spec
    # object is taken as given. Explicit keyword overrides win in both cases.
    spec_fields = {k: v for k, v in preset.items()
                   if k in ATTENTION_FIELDS and isinstance(attention, str)}
    spec_fields.update({k: v for k, v in overrides.items() if k in ATTENTION_FIELDS})
    kwargs["attention"] = attention_spec(attention, **spec_fields).with_paper_factor(factor)
    return cls, kwargs


def create_model(name: str, *, rngs: nnx.Rngs | None = None, **overrides: Any) -> nnx.Module:
    """Builds the preset ``name`` with ``overrides`` (e.g. ``attention="softmax"``).

    Args:
      name: one of :func:`list_models`.
      rngs: initialisation (and dropout) streams; default ``nnx.Rngs(0)``.
      **overrides: keyword arguments of the model class, replacing the preset's, and fields
        of :class:`astroflax.nn.AttentionSpec` replacing the variant's.

    Returns:
      The model; calling it returns ``(logits, aux)``.
    """
    cls, kwargs = model_kwargs(name, **overrides)
    return cls(**kwargs, rngs=nnx.Rngs(0) if rngs is None else rngs)


def check_model(name: str, **overrides: Any) -> None:
    """Runs every check ``create_model(name, **overrides)`` makes, without building the model.

    The spec's and the constructors' own checks run as the model is traced abstractly with
    ``nnx.eval_shape`` (no parameter is drawn), plus whether the kernel implementation compiles
    on this backend.

    Raises:
      ValueError: what :func:`create_model` would raise; a bad setting's message starts with
        its field name (``alpha: expected > 0 ...``).
    """
    cls, kwargs = model_kwargs(name, **overrides)
    nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))
    if kwargs["attention"].implementation == "pallas":
        # On demand: importing Pallas costs about a second, and only this setting needs it.
        from astroflax.kernels.pallas.attention import platform_backend

        try:
            platform_backend(interpret=False)
        except ValueError:
            raise ValueError(f"implementation: expected 'xla' on a {jax.default_backend()!r} "
                             "backend (the Pallas kernels compile for GPU or TPU)") from None


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves) of a model (concrete or abstract)."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


__all__ = [
    "LOGICAL_AXES",
    "PRESETS",
    "SETTINGS",
    "VARIANTS",
    "AstroLM",
    "AstroPairClassifier",
    "AstroTextClassifier",
    "AstroViT",
    "Setting",
    "check_model",
    "count_params",
    "create_model",
    "keeps_preset",
    "list_models",
    "model_kwargs",
]
