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

Every field exists in every config, so ``--config.x.y=...`` overrides any of them and a typo
fails; ``python -m experiments.run --help`` lists them with their help and defaults. Each is
declared once: ``model.*`` on the attention spec and the model constructors (collected in
:data:`astroflax.models.SETTINGS`; None, or ``"paper"`` where declared so, keeps the preset's
value), the others in :data:`FIELDS` below. :func:`fsdp` switches a config to FSDP and
:func:`tensor_parallel` adds a ``model`` mesh axis (see ``astroflax/train/mesh.py``).

The config argument (``--config=cifar_astro:smoke``): ``smoke`` shrinks any config to a few
seconds on CPU (tiny preset, 64 examples, 6 steps) with the same code path.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

from astroflax.models import SETTINGS, VARIANTS

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


#: Every field outside ``model``: ``(default, help)``, or ``(None, type, help)`` for a field
#: that is unset by default (``--config.x=...`` then parses the value as ``type``).
FIELDS: dict[str, dict[str, tuple]] = {
    "": {
        "name": ("", "the config's name (reports)"),
        "seed": (0, "init / dropout / shuffling seed"),
        "distributed": (False, "start jax.distributed even without coordinator flags (a bare "
                               "initialize() auto-detects TPU pods and SLURM)"),
    },
    "data": {
        "name": ("digits", "digits | cifar10 | imdb | wikitext2 | code (the Python stdlib "
                           "source)"),
        "data_dir": (None, str, "where the data lies (None: the TFDS default; WikiText-2: "
                                "~/tensorflow_datasets/downloads/manual)"),
        "num_train": (None, int, "cap on training examples (None = all)"),
        "num_eval": (None, int, "cap on eval examples (None = all)"),
        "max_len": (None, int, "sequence length of text datasets (imdb, wikitext2, code)"),
        "vocab_size": (None, int, "vocabulary cap (IMDB, word-level WikiText-2)"),
        "tokenizer": ("gpt2", "gpt2 | word (WikiText-2)"),
        "glove_path": (None, str, "IMDB: GloVe 840B 300-d text file (the paper's input "
                                  "vectors; None: learned embeddings)"),
        "augment": (False, "CIFAR-10 / digits: random crop + flip"),
        "eval_split": ("test", "WikiText-2: validation | test; LRA Image / Retrieval / "
                               "Pathfinder: validation | test"),
        "seed": (0, "seed of generated data (MQAR); the same seed gives the same examples"),
        "num_pairs": (None, int, "MQAR: key-value pairs K per sequence (4K <= max_len)"),
        "power_a": (None, float, "MQAR: query slots drawn with p(i) ~ a i^(a-1) (None: "
                                 "Zoology's 0.01)"),
        "listops_tier": (None, str, "ListOps: lra (500 < length < 2000, 96k/2k/2k) | cpu "
                                    "(50 < length < 256, 20k/2k/2k)"),
        "listops_min_len": (None, int, "ListOps: generated length bound, exclusive (None: the "
                                       "tier's)"),
        "listops_max_len": (None, int, "ListOps: generated length bound, exclusive (None: the "
                                       "tier's)"),
        "listops_sizes": (None, tuple, "ListOps: distinct trees (train, val, test) to generate "
                                       "(None: the tier's)"),
    },
    "train": {
        "batch_size": (32, "global batch size (at most the training set)"),
        "eval_batch_size": (None, int, "eval batch size (None = batch_size)"),
        "num_epochs": (10.0, "epochs to train (when num_train_steps is None)"),
        "num_train_steps": (None, int, "steps to train (wins over num_epochs when set)"),
        "learning_rate": (1e-3, "peak learning rate"),
        "schedule": ("cosine", "cosine | constant (after warmup)"),
        "warmup_steps": (0, "linear warmup steps"),
        "weight_decay": (0.01, "AdamW weight decay"),
        "b1": (0.9, "Adam beta1"),
        "b2": (0.999, "Adam beta2"),
        "grad_clip_norm": (None, float, "global gradient-norm clip (None = off)"),
        "log_every_steps": (50, "steps between train-loss log lines"),
        "eval_every_steps": (0, "steps between evaluations (0 = once per epoch)"),
        "checkpoint_every_steps": (500, "steps between checkpoints"),
        "keep_checkpoints": (2, "latest checkpoints kept (plus the best one)"),
        "target_accuracy": (0.85, "accuracy for the epochs-to-target report"),
        "data_parallel": (True, "split batches over all devices (False: one device)"),
    },
    "mesh": {
        "axes": (("data",), "device mesh axis names"),
        "shape": ((-1,), "mesh shape (-1 = the remaining devices)"),
        "batch_axes": (("data",), "mesh axes the batch is split over"),
        "rules": ((), "(logical parameter axis, mesh axis) sharding rules, e.g. "
                      "(('embed', 'fsdp'),)"),
        "num_devices": (None, int, "use the first N devices (None = all; single process)"),
    },
}


def _value(declared: tuple) -> Any:
    return config_dict.placeholder(declared[1]) if declared[0] is None else declared[0]


def field_help() -> dict[str, str]:
    """``{"train.batch_size": "global batch size ...", "model.alpha": ...}`` for every field."""
    out = {(f"{section}." if section else "") + k: v[-1]
           for section, fields in FIELDS.items() for k, v in fields.items()}
    out.update({f"model.{k}": s.help for k, s in SETTINGS.items()})
    return out


def base_config(name: str) -> ml_collections.ConfigDict:
    """Every field at its declared default (:data:`FIELDS`, :data:`astroflax.models.SETTINGS`)."""
    c = ml_collections.ConfigDict({k: _value(v) for k, v in FIELDS[""].items()})
    c.name = name
    for section in ("data", "model", "train", "mesh"):
        if section == "model":
            c.model = ml_collections.ConfigDict({
                k: config_dict.placeholder(s.type) if s.default is None else s.default
                for k, s in SETTINGS.items()})
        else:
            c[section] = ml_collections.ConfigDict(
                {k: _value(v) for k, v in FIELDS[section].items()})
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


def family_arg(arg: str | None) -> tuple[str, bool]:
    """``"softmax"`` / ``"softmax:smoke"`` (a family config's argument) -> ``(variant, smoke)``.

    ``--config=listops_softmax:smoke`` reaches the ``listops`` family module as
    ``"softmax:smoke"`` (``experiments/run.py`` resolves the name).

    Raises:
      ValueError: no variant, an unknown variant (lists them) or an argument other than smoke.
    """
    variant, _, rest = (arg or "").partition(":")
    if variant not in VARIANTS:
        raise ValueError(f"config variant {variant!r}: expected one of {sorted(VARIANTS)} "
                         "(--config=<family>_<variant>[:smoke])")
    return variant, parse_arg(rest)


def family_config(family: str, arg: str | None, *, data: dict[str, Any], model: str,
                  train: dict[str, Any]) -> ml_collections.ConfigDict:
    """A config family's config for the variant in ``arg`` (``"<variant>[:smoke]"``).

    ``data``: the ``config.data`` fields (``name`` among them); ``model``: the preset;
    ``train``: the ``config.train`` fields. The smoke variant is :func:`listops_smoke` for
    ListOps and :func:`shrink` otherwise.
    """
    variant, is_smoke = family_arg(arg)
    c = base_config(f"{family}_{variant}")
    c.data.update(data)
    c.model.update({"name": model, "attention": variant})
    c.train.update(train)
    if not is_smoke:
        return c
    return listops_smoke(c) if c.data.name == "listops" else shrink(c)


def shrink(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A smoke run of a long-range config: its own preset at width 16, 1 layer, 2 heads.

    The model class, pooling and positions stay the preset's (so the smoke run takes the
    family's code path); 64 / 32 examples, the smoke schedule (:func:`smoke_schedule`).
    """
    c.model.update({"features": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.1,
                    "chunk_size": 8})
    if c.model.mlp_dim != 0:
        c.model.mlp_dim = 32
    c.data.num_train, c.data.num_eval = 64, 32
    c.train.eval_batch_size = None
    return smoke_schedule(c)


def listops_smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """:func:`shrink` for ListOps, on a tiny generated set (lengths 11-39, 64/32/32 trees).

    Generated in under a second into ``data.data_dir`` (default ``~/astroflax_data/``).
    """
    c.data.update({"listops_tier": "cpu", "listops_min_len": 10, "listops_max_len": 40,
                   "listops_sizes": (64, 32, 32)})
    return shrink(c)


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
