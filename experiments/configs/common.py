"""The shared config builder: every ``experiments/configs/<task>_<variant>.py`` is one call here.

Each config file's docstring holds only what is its own (command, expected result, measured
runtime); the setup they share is described here, once.

The paper's runs (:func:`paper_config`, docs/model.md §7; values in :data:`PAPER`):

* ``cifar_*``: preset ``paper_cifar10`` (3×3 conv stem, patch 2, 8 layers, 8 heads, D = 256,
  m_div = 500·D), AdamW lr 1e-3, batch 32, 250 epochs; astroflax's choices where the paper is
  silent: cosine schedule, 5 warmup epochs, weight decay 0.05, random crop + flip. Data: TFDS
  ``cifar10`` (a first run's error message gives the one preparation command).
* ``imdb_*``: preset ``paper_imdb`` (1 layer, 4 heads, D = 128, length 400, m_div = 500·D),
  AdamW lr 1e-5, batch 64, 120 epochs; vocabulary: the 20 000 most frequent training words;
  GloVe 840B 300-d input vectors with ``--config.data.glove_path=FILE`` (the paper's input;
  without it the embeddings are learned); cosine schedule, 1 warmup epoch, weight decay 0.01
  (not stated in the paper). Data: TFDS ``imdb_reviews`` as array_record (see the error message
  of a first run).
* ``wikitext2_*``: preset ``paper_wikitext2`` (decoder, 1 layer, 6 heads, D = 768, length 512,
  m_div = 100·D, tied embeddings), AdamW lr 1e-5, batch 24, 50 epochs; GPT-2 BPE tokens
  (tiktoken; word-level fallback when its vocabulary cannot be loaded, reported in
  summary.json); perplexity on the test split; cosine schedule, 1 warmup epoch, weight decay
  0.01 (not stated in the paper). Data: ``wikitext-2-raw-v1.zip`` (or its ``wiki.*.raw``
  files) in ``--config.data.data_dir`` (default ``~/tensorflow_datasets/downloads/manual``).
* ``digits_*``: the offline runs of :func:`digits_config` (deterministic: a rerun gives the
  same numbers); the test split is a fixed stratified 20 % (360 images).

"Expected (paper)" in a config is the paper's reported figure ("not reported" where the
variant is astroflax's extra baseline or ablation). "Runtime" was measured on the project's
2-core x86 CPU (jax 0.10.2): seconds per training step at the paper's batch, and the full
run extrapolated from it; a variant marked "not timed" shares the architecture, and so about
the step time, of the ``<task>_astro`` config. The paper runs are meant for a GPU/TPU, where
they have not been timed; on a CPU use ``--config=<name>:smoke``.

Field reference (every field exists in every config, so ``--config.x.y=...`` overrides any of
them and a typo fails):

* ``name``: the config's stem (reports).  ``seed``: init / dropout / shuffling seed.
* ``data``: ``name`` (digits | cifar10 | imdb | wikitext2), ``data_dir`` (None: TFDS default;
  WikiText-2: ``~/tensorflow_datasets/downloads/manual``), ``num_train`` / ``num_eval`` (caps,
  None = all), ``max_len`` (text), ``vocab_size`` (IMDB / word-level WikiText cap),
  ``tokenizer`` (gpt2 | word), ``glove_path`` (IMDB GloVe 840B 300-d text file),
  ``augment`` (CIFAR crop + flip), ``eval_split`` (WikiText-2: validation | test).
* ``model``: ``name`` (a preset of ``astroflax.models.list_models()``), ``attention`` (a
  variant of docs/model.md §5, ``astroflax.nn.VARIANTS``, including the ``none`` control),
  ``alpha`` (Ca²⁺ exponent override), ``m_div`` (``"paper"``, the default: the variant's own
  rule, the preset's factor × D for the astro family and 1 for linear / kozachkov_rf; ``"m"``;
  a number such as ``"64000"``; a factor of the width such as ``"500D"``),
  ``pos_embedding`` (``"paper"``, the default: the paper's own mix, the astrocytic term alone
  for astro / astro_no_nonlin and a sinusoidal table for the others; ``"none"``,
  ``"sinusoidal"`` or ``"learned"`` for every variant alike), ``embed_scale`` (token models:
  ``"sqrt_d"``, the model default, or ``"one"``), ``causal`` (LM only; False is a control that
  sees the future), and constructor overrides left None to keep the preset (``features``,
  ``num_layers``, ``num_heads``, ``mlp_dim``, ``dropout``, ``mode``, ``chunk_size``,
  ``implementation`` (``"xla"``, or ``"pallas"`` for the fused GPU/TPU kernels),
  ``patch_size``, ``embed_dim``, ``freeze_embedding``).
* ``train``: ``batch_size`` (global), ``eval_batch_size`` (None = batch_size), ``num_epochs``
  or ``num_train_steps`` (wins when set), ``learning_rate``, ``schedule`` (cosine | constant),
  ``warmup_steps``, ``weight_decay``, ``b1``, ``b2``, ``grad_clip_norm``, ``log_every_steps``,
  ``eval_every_steps`` (0 = every epoch), ``checkpoint_every_steps``, ``keep_checkpoints``,
  ``target_accuracy`` (for epochs-to-target), ``data_parallel`` (split batches over all
  devices).

* ``mesh``: ``axes``, ``shape`` (-1 = the remaining devices), ``batch_axes`` (axes the batch
  is split over), ``rules`` (logical parameter axis -> mesh axis, e.g. ``(("embed", "fsdp"),)``,
  applied in order); ``num_devices`` (None = all; N = the first N, single process); default:
  every device on ``data``. :func:`fsdp` switches a config to FSDP, :func:`tensor_parallel`
  adds a ``model`` axis; see ``astroflax/train/mesh.py``.
* ``distributed``: start ``jax.distributed`` (several hosts) even when no coordinator is given
  by flags or environment: a bare ``initialize()`` auto-detects TPU pod slices and SLURM
  (``astroflax/train/distributed.py``).

The config argument (``--config=cifar_astro:smoke``): ``smoke`` shrinks any config to a few
seconds on CPU (tiny preset, 64 examples, 6 steps) with the same code path.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

#: Paper setups (docs/model.md §7). Values the paper does not state are astroflax's choices, marked.
PAPER = {
    "cifar10": {
        "model": "paper_cifar10", "learning_rate": 1e-3, "batch_size": 32, "num_epochs": 250,
        # Not stated in the paper: weight decay, warmup, schedule, augmentation.
        "weight_decay": 0.05, "warmup_epochs": 5, "augment": True, "max_len": None},
    "imdb": {
        "model": "paper_imdb", "learning_rate": 1e-5, "batch_size": 64, "num_epochs": 120,
        "weight_decay": 0.01, "warmup_epochs": 1, "augment": False, "max_len": 400},
    "wikitext2": {
        "model": "paper_wikitext2", "learning_rate": 1e-5, "batch_size": 24, "num_epochs": 50,
        "weight_decay": 0.01, "warmup_epochs": 1, "augment": False, "max_len": 512},
}
#: Training-set sizes, to turn warmup epochs into steps without reading the data.
TRAIN_SIZE = {"cifar10": 50_000, "imdb": 25_000, "wikitext2": 4_600, "digits": 1_437}
SMOKE_MODEL = {"cifar10": "tiny_cifar10", "imdb": "tiny_imdb", "wikitext2": "tiny_wikitext2",
               "digits": "tiny_cifar10"}
ARGS = (None, "", "smoke")


def base_config(name: str) -> ml_collections.ConfigDict:
    """Every field with a neutral default (see the module docstring)."""
    c = ml_collections.ConfigDict()
    c.name = name
    c.seed = 0
    c.distributed = False
    c.data = ml_collections.ConfigDict({
        "name": "digits", "data_dir": config_dict.placeholder(str),
        "num_train": config_dict.placeholder(int), "num_eval": config_dict.placeholder(int),
        "max_len": config_dict.placeholder(int), "vocab_size": config_dict.placeholder(int),
        "tokenizer": "gpt2", "glove_path": config_dict.placeholder(str), "augment": False,
        "eval_split": "test"})
    c.model = ml_collections.ConfigDict({
        "name": "tiny_cifar10", "attention": "astro", "alpha": config_dict.placeholder(float),
        "features": config_dict.placeholder(int), "num_layers": config_dict.placeholder(int),
        "num_heads": config_dict.placeholder(int), "mlp_dim": config_dict.placeholder(int),
        "dropout": config_dict.placeholder(float), "m_div": "paper",
        "mode": config_dict.placeholder(str), "chunk_size": config_dict.placeholder(int),
        "implementation": config_dict.placeholder(str),
        "patch_size": config_dict.placeholder(int), "embed_dim": config_dict.placeholder(int),
        "freeze_embedding": config_dict.placeholder(bool),
        "pos_embedding": "paper", "embed_scale": config_dict.placeholder(str),
        "causal": config_dict.placeholder(bool)})
    c.train = ml_collections.ConfigDict({
        "batch_size": 32, "eval_batch_size": config_dict.placeholder(int), "num_epochs": 10.0,
        "num_train_steps": config_dict.placeholder(int), "learning_rate": 1e-3,
        "schedule": "cosine", "warmup_steps": 0, "weight_decay": 0.01, "b1": 0.9, "b2": 0.999,
        "grad_clip_norm": config_dict.placeholder(float), "log_every_steps": 50,
        "eval_every_steps": 0, "checkpoint_every_steps": 500, "keep_checkpoints": 2,
        "target_accuracy": 0.85, "data_parallel": True})
    c.mesh = ml_collections.ConfigDict({
        "axes": ("data",), "shape": (-1,), "batch_axes": ("data",), "rules": (),
        "num_devices": config_dict.placeholder(int)})
    return c


def fsdp(c: ml_collections.ConfigDict, fsdp_size: int = -1) -> ml_collections.ConfigDict:
    """Switches ``c`` to FSDP over a ``fsdp`` mesh axis.

    Mesh ``(data, fsdp)`` of shape ``(-1, fsdp_size)`` (default: all devices on ``fsdp``), the
    batch split over both axes, every parameter and its optimizer moments sharded over
    ``fsdp`` through their ``embed`` dimension, or else their ``vocab`` one (IMDB's untied
    300-d GloVe table); see ``astroflax/train/mesh.py`` for how rules are applied.
    """
    c.mesh.axes = ("data", "fsdp")
    c.mesh.shape = (1, -1) if fsdp_size == -1 else (-1, fsdp_size)
    c.mesh.batch_axes = ("data", "fsdp")
    c.mesh.rules = (("embed", "fsdp"), ("vocab", "fsdp"))
    return c


def tensor_parallel(c: ml_collections.ConfigDict, model_size: int) -> ml_collections.ConfigDict:
    """Adds a ``model`` mesh axis of ``model_size`` devices splitting heads and MLP units.

    Appended to ``c``'s mesh (e.g. after :func:`fsdp`: ``(data, fsdp, model)``); the batch is
    not split over ``model`` (its devices hold the same rows and compute different heads).
    Attention projections ``[D, H, d]`` shard ``H``, the MLP ``[D, F]`` / ``[F, D]`` shard
    ``F``; a dimension ``model_size`` does not divide stays whole.
    """
    c.mesh.axes = (*c.mesh.axes, "model")
    c.mesh.shape = (*c.mesh.shape, int(model_size))
    c.mesh.rules = (*c.mesh.rules, ("heads", "model"), ("mlp", "model"))
    return c


def parse_arg(arg: str | None) -> bool:
    """``True`` for the smoke variant; ValueError listing the accepted arguments otherwise."""
    if arg not in ARGS:
        raise ValueError(f"config argument {arg!r}: expected nothing or 'smoke'")
    return arg == "smoke"


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks ``c`` to seconds on CPU: tiny preset, 64/32 examples, 6 steps, batch 16."""
    task = c.data.name
    c.model.name = SMOKE_MODEL[task]
    for k in ("features", "num_layers", "num_heads", "mlp_dim", "embed_dim", "chunk_size"):
        c.model[k] = None
    if task == "cifar10":
        c.model.patch_size = 4              # 64 tokens from 32×32 images
    if task == "digits":
        c.model.patch_size = 2
    c.model.dropout = 0.1                    # keep the dropout RNG path exercised
    c.data.num_train, c.data.num_eval = 64, 32
    if task in ("imdb", "wikitext2"):
        c.data.max_len = 16
        c.data.vocab_size = 200
        c.data.tokenizer = "word"
    smoke_schedule(c)
    c.train.learning_rate = 1e-3
    return c


def smoke_schedule(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Sets the smoke runs' schedule on ``c`` (returned): batch 16, 6 steps (2 of warmup).

    A log record every step, an evaluation and a checkpoint every 3, so that a smoke run
    exercises evaluation and resume.
    """
    t = c.train
    t.batch_size, t.num_train_steps, t.warmup_steps = 16, 6, 2
    t.log_every_steps, t.eval_every_steps, t.checkpoint_every_steps = 1, 3, 3
    return c


def paper_config(task: str, attention: str, name: str, arg: str | None = None
                 ) -> ml_collections.ConfigDict:
    """The paper's setup (docs/model.md §7) of ``task`` with ``attention``."""
    is_smoke = parse_arg(arg)
    p = PAPER[task]
    c = base_config(name)
    c.data.name = task
    c.data.augment = p["augment"]
    c.data.max_len = p["max_len"]
    if task == "imdb":
        c.data.vocab_size = 20_000          # the preset's vocabulary (not stated in the paper)
    if task == "wikitext2":
        c.data.eval_split = "test"
    c.model.name = p["model"]
    c.model.attention = attention
    c.train.batch_size = p["batch_size"]
    c.train.num_epochs = float(p["num_epochs"])
    c.train.learning_rate = p["learning_rate"]
    c.train.weight_decay = p["weight_decay"]
    c.train.warmup_steps = p["warmup_epochs"] * (TRAIN_SIZE[task] // p["batch_size"])
    c.train.log_every_steps = 100
    c.train.checkpoint_every_steps = 2000
    return smoke(c) if is_smoke else c


def digits_config(attention: str, name: str, arg: str | None = None
                  ) -> ml_collections.ConfigDict:
    """The offline default: scikit-learn digits (8×8, 1437 train / 360 test) with a small ViT.

    A 3×3 conv stem then 2×2 patches (16 tokens), 2 post-LN layers of width 64 with 4 heads,
    AdamW 2e-3 with warmup + cosine, batch 32, 40 × 44 = 1760 steps (39.2 passes over the
    1437 training images; an epoch is ``num_train // batch_size`` steps).
    """
    is_smoke = parse_arg(arg)
    c = base_config(name)
    c.data.name = "digits"
    c.model.name = "tiny_cifar10"
    c.model.attention = attention
    c.model.patch_size = 2
    c.model.features = 64
    c.model.num_layers = 2
    c.model.num_heads = 4
    c.model.dropout = 0.1
    c.train.update({"batch_size": 32, "num_epochs": 40.0, "learning_rate": 2e-3,
                    "warmup_steps": 100, "weight_decay": 0.05, "log_every_steps": 45,
                    "checkpoint_every_steps": 450})
    return smoke(c) if is_smoke else c
