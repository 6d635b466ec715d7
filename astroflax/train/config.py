"""Checks a run's config before anything is built, and turns ``config.model`` into model kwargs.

Every error is a :class:`ConfigError` whose message starts with the dotted field name
(``config.model.alpha: expected > 0, got -1.0``), so a mistyped experiment fails in a second
with a pointer to the line to fix, not deep inside a compile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax

from astroflax.models import LOGICAL_AXES, SETTINGS, check_model, keeps_preset

#: Keys of ``config.model`` that are not model-constructor keywords.
_MODEL_META = ("name",)
SCHEDULES = ("cosine", "constant")
#: Datasets that read ``config.data.max_len`` (the sequence length); the others ignore it.
TEXT_DATASETS = ("imdb", "wikitext2", "code", "mqar", "listops", "lra_text", "lra_retrieval")
#: ``config.mesh`` of a config that has none: every device on ``data`` (data parallelism).
DEFAULT_MESH = {"axes": ("data",), "shape": (-1,), "batch_axes": ("data",), "rules": (),
                "num_devices": None}


class ConfigError(ValueError):
    """An invalid config value; the message names the field."""


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part] if isinstance(node, Mapping) else getattr(node, part)
    return node


def _check(cond: bool, field: str, expected: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"config.{field}: expected {expected}, got {value!r}")


def model_overrides(model_cfg: Mapping[str, Any], data_overrides: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Keyword arguments for ``create_model(model_cfg.name, **kw)``.

    A field at the value that keeps the preset's (None, or ``"paper"`` where the declaration's
    default is ``"paper"``: :func:`astroflax.models.keeps_preset`) is left out; attention-spec
    fields pass as keywords, which :func:`astroflax.models.create_model` folds into the spec;
    values the data fixes (image size, vocabulary, ...) are added, and a config value that
    contradicts them is an error.

    Raises:
      ConfigError: a field that contradicts the data.
    """
    kw = {k: v for k, v in model_cfg.items() if k not in _MODEL_META and not keeps_preset(k, v)}
    for k, v in (data_overrides or {}).items():
        if k in kw and kw[k] != v:
            raise ConfigError(f"config.model.{k}: {kw[k]!r} contradicts the data, which "
                              f"fixes {k}={v!r}; leave it unset")
        kw[k] = v
    return kw


def mesh_config(cfg: Any) -> Mapping[str, Any]:
    """``cfg.mesh``, or the default (all devices on ``data``) for a config without one."""
    return cfg.get("mesh", DEFAULT_MESH)


def run_device_count(cfg: Any) -> int:
    """Devices a run uses: 1 without ``train.data_parallel``, else ``mesh.num_devices`` or all."""
    n = mesh_config(cfg).get("num_devices")
    if not cfg["train"].get("data_parallel", True):
        return 1
    return jax.device_count() if n is None else int(n)


def validate_mesh(mesh_cfg: Mapping[str, Any], num_devices: int) -> int:
    """Checks ``config.mesh`` against ``num_devices``; returns the batch split (devices).

    Errors: malformed fields, a shape whose product is not the device count, batch axes or
    rule targets that are not mesh axes, a logical name that is not one of astroflax's, and a
    mesh axis of size > 1 that neither splits the batch nor is used by any rule.
    """
    from astroflax.train.mesh import mesh_axes_of, resolve_shape

    axes, shape = tuple(mesh_cfg["axes"]), tuple(mesh_cfg["shape"])
    _check(len(axes) > 0 and all(isinstance(a, str) for a in axes) and len(set(axes)) == len(axes),
           "mesh.axes", "distinct axis names", axes)
    _check(len(shape) == len(axes) and all(isinstance(s, int) and (s > 0 or s == -1)
                                           for s in shape) and shape.count(-1) <= 1,
           "mesh.shape", f"{len(axes)} positive ints (one may be -1) for axes {axes}", shape)
    sizes = resolve_shape(shape, num_devices)
    _check(math.prod(sizes) == num_devices and -1 not in sizes, "mesh.shape",
           f"a shape whose product is the {num_devices} device(s) in use", shape)
    batch_axes = tuple(mesh_cfg["batch_axes"])
    _check(all(a in axes for a in batch_axes), "mesh.batch_axes", f"axes of {axes}", batch_axes)
    # In mesh order, each process's devices hold one contiguous block of rows of the batch
    # (jax.make_mesh lays processes out along the leading axes), which the data pipeline needs.
    _check(list(batch_axes) == [a for a in axes if a in batch_axes], "mesh.batch_axes",
           f"axes listed in the order of config.mesh.axes {axes}", batch_axes)
    used: set[str] = set()
    named = [rule[0] for rule in mesh_cfg["rules"]]
    _check(len(set(named)) == len(named), "mesh.rules",
           "each logical name in one rule (list a tuple of mesh axes to use several)",
           mesh_cfg["rules"])
    for rule in mesh_cfg["rules"]:
        _check(len(rule) == 2 and rule[0] in LOGICAL_AXES, "mesh.rules",
               f"(logical_name, mesh_axis) pairs with names from {LOGICAL_AXES}", rule)
        targets = mesh_axes_of(rule[1])
        _check(all(a in axes for a in targets), "mesh.rules",
               f"rules whose mesh axes are among {axes}", rule)
        used.update(targets)
    for a, n in zip(axes, sizes, strict=True):
        _check(n == 1 or a in used or a in batch_axes, "mesh.axes",
               f"every axis of size > 1 used by a rule of config.mesh.rules or listed in "
               f"config.mesh.batch_axes, but axis {a!r} (size {n}) is used by none", axes)
    return math.prod(n for a, n in zip(axes, sizes, strict=True) if a in batch_axes)


def check_model_section(model_cfg: Mapping[str, Any]) -> None:
    """Checks ``config.model`` with the model's own checks (:func:`astroflax.models.check_model`).

    The settings are declared, and checked, where they live (:data:`astroflax.models.SETTINGS`);
    their ValueError is passed through with the field path in front.

    Raises:
      ConfigError: ``config.model.<field>: ...`` for a bad setting, ``config.model: ...`` for a
        combination (a keyword the chosen model does not take, widths that do not divide).
    """
    try:
        check_model(model_cfg["name"], **model_overrides(model_cfg))
    except ValueError as e:
        raise model_error(e) from None


def model_error(e: ValueError) -> ConfigError:
    """A model's or spec's ValueError as a ConfigError that names the ``config.model`` field."""
    field, sep, rest = str(e).partition(": ")
    return ConfigError(f"config.model.{field}: {rest}" if sep and field in SETTINGS
                       else f"config.model: {e}")


def validate_config(cfg: Any, num_devices: int | None = None, process_count: int | None = None
                    ) -> None:
    """Raises :class:`ConfigError` naming the first invalid field of a run config.

    Checks types and ranges of the training fields, that the model and attention variant
    exist and accept the given keywords, that batches split evenly over the batch axes'
    devices (data parallelism needs equal shards), and the mesh (:func:`validate_mesh`).

    Args:
      cfg: the run config (``seed``, ``data``, ``model``, ``train``; see
        ``experiments/configs/common.py``).
      num_devices: devices of the run's mesh (default: :func:`run_device_count`).
      process_count: JAX processes (default ``jax.process_count()``).
    """
    from astroflax.data import DATASETS  # data imports grain/TFDS lazily; keep that lazy

    for section in ("data", "model", "train"):
        _check(section in cfg, section, "a section", None)
    _check(_get(cfg, "data.name") in DATASETS, "data.name", f"one of {sorted(DATASETS)}",
           _get(cfg, "data.name"))
    if cfg["data"].get("augment"):
        _check(_get(cfg, "data.name") in ("digits", "cifar10"), "data.augment",
               "False for text datasets (random crop + flip is for images)", True)
    if cfg["data"].get("max_len") is not None:
        _check(_get(cfg, "data.name") in TEXT_DATASETS, "data.max_len",
               f"unset for {_get(cfg, 'data.name')} (it has no sequence length; it is used "
               f"by {TEXT_DATASETS})", cfg["data"]["max_len"])
        _check(isinstance(cfg["data"]["max_len"], int) and cfg["data"]["max_len"] > 0,
               "data.max_len", "a positive int", cfg["data"]["max_len"])
    check_model_section(cfg["model"])

    t = cfg["train"]
    processes = process_count or jax.process_count()
    devices = num_devices or run_device_count(cfg)
    n = mesh_config(cfg).get("num_devices")
    _check(processes == 1 or t.get("data_parallel", True), "train.data_parallel",
           f"True with {processes} processes (every process needs devices in the mesh)",
           t.get("data_parallel"))
    if n is not None:
        _check(isinstance(n, int) and 1 <= n <= jax.device_count() and processes == 1,
               "mesh.num_devices", f"None or 1..{jax.device_count()} (single process only)", n)
    split = validate_mesh(mesh_config(cfg), devices)
    for k in ("batch_size", "eval_batch_size"):
        b = t.get(k)
        if k == "eval_batch_size" and b is None:
            continue
        _check(isinstance(b, int) and b > 0, f"train.{k}", "a positive int", b)
        # Enough for processes too: each holds whole device shards of the batch (or the same
        # rows as others, when a model axis spans processes).
        _check(b % split == 0, f"train.{k}",
               f"divisible by the {split} devices the batch is split over "
               "(config.mesh.batch_axes)"
               + (" (or set train.data_parallel=False)" if processes == 1 else ""), b)
    _check(t["learning_rate"] > 0, "train.learning_rate", "> 0", t["learning_rate"])
    _check(t["weight_decay"] >= 0, "train.weight_decay", ">= 0", t["weight_decay"])
    _check(t["schedule"] in SCHEDULES, "train.schedule", f"one of {SCHEDULES}", t["schedule"])
    _check(t["warmup_steps"] >= 0, "train.warmup_steps", ">= 0", t["warmup_steps"])
    if t.get("num_train_steps") is not None:
        _check(t["num_train_steps"] > 0, "train.num_train_steps", "> 0", t["num_train_steps"])
    else:
        _check(t["num_epochs"] > 0, "train.num_epochs", "> 0", t["num_epochs"])
    if t.get("grad_clip_norm") is not None:
        _check(t["grad_clip_norm"] > 0, "train.grad_clip_norm", "> 0", t["grad_clip_norm"])
    for k in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
        _check(isinstance(t[k], int) and t[k] >= 1, f"train.{k}", "an int >= 1", t[k])
    _check(isinstance(t["eval_every_steps"], int) and t["eval_every_steps"] >= 0,
           "train.eval_every_steps", "an int >= 0 (0 = once per epoch)", t["eval_every_steps"])
    _check(0 < t["target_accuracy"] <= 1, "train.target_accuracy", "in (0, 1]",
           t["target_accuracy"])


def validate_against_data(cfg: Any, ds: Any) -> None:
    """Checks of the config that need the loaded data (before anything is compiled).

    Args:
      cfg: the run config.
      ds: its loaded :class:`astroflax.data.Dataset` (``num_train`` examples).

    Raises:
      ConfigError: ``train.batch_size`` larger than the training set (each step would wrap
        around the data several times, so "epochs" would lose their meaning).
    """
    b = cfg["train"]["batch_size"]
    _check(b <= ds.num_train, "train.batch_size",
           f"at most the {ds.num_train} training examples of {ds.name} (or raise "
           "config.data.num_train)", b)
