"""A trained model back from its workdir: ``load_model(workdir)``, ready to call.

Everything comes from the run itself: its ``config.json`` (written by
:func:`astroflax.train.train_and_evaluate`), the dataset that config names (read once, as the
run read it, for what the data fixes in the model: vocabulary size, image size, classes) and
the ``model`` part of one checkpoint (the optimizer state is not read). The model is built
through the trainer's own config -> keyword function (:func:`astroflax.train.model_overrides`),
so it is the network that was trained.

Which checkpoint: ``"best"`` (highest eval accuracy, or lowest eval perplexity, among the
steps that still have a checkpoint, from ``metrics.jsonl``; ties go to the earlier step, as in
``summary.json``), ``"latest"``, or a step number. The default is best when some checkpoint
was evaluated, else latest.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from astroflax.data import Dataset, load_dataset
from astroflax.train.checkpoint import Checkpointer, CorruptCheckpointError, verify_restored
from astroflax.train.config import (
    ConfigError,
    mesh_config,
    model_overrides,
    run_device_count,
    validate_mesh,
)
from astroflax.train.mesh import make_mesh, rule_shardings
from astroflax.train.metrics import read_metrics


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A workdir's model at one checkpoint, with what it was trained on.

    Attributes:
      workdir: the run directory. config: its ``config.json`` as a ``ConfigDict``.
      step: the checkpoint step the parameters come from. model: the restored model, in
        eval mode (dropout off). dataset: the run's dataset (see :func:`load_run`).
      mesh: the mesh the parameters are placed on, or None (one device).
    """

    workdir: Path
    config: ml_collections.ConfigDict
    step: int
    model: nnx.Module
    dataset: Dataset
    mesh: jax.sharding.Mesh | None = None


def run_mesh(cfg: ml_collections.ConfigDict) -> jax.sharding.Mesh:
    """The mesh of the run's ``config.mesh`` over this machine's devices, as the trainer builds it.

    Raises:
      ValueError: more than one JAX process (load and evaluate on one process), or a mesh
        that does not fit this machine's devices (e.g. a model axis larger than them).
    """
    if jax.process_count() > 1:
        raise ValueError("loading onto the run's mesh is single-process; run on one host")
    devices = jax.devices()[:run_device_count(cfg)]
    try:
        validate_mesh(mesh_config(cfg), len(devices))
    except ConfigError as e:
        raise ValueError(f"the run's mesh does not fit the {len(devices)} device(s) here ({e}); "
                         "load onto one device instead (mesh=None; experiments.evaluate "
                         "--mesh=single)") from None
    return make_mesh(mesh_config(cfg), devices)


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The run config of ``workdir`` (its ``config.json``).

    Raises:
      FileNotFoundError: ``workdir`` holds no ``config.json`` (not a training run directory).
    """
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --workdir must be the directory of a run "
                                "of experiments.run / train_and_evaluate (it writes config.json)")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def checkpoint_steps(workdir: str | Path) -> list[int]:
    """Steps of the committed checkpoints in ``workdir/checkpoints``, ascending."""
    folder = Checkpointer.directory_in(workdir)
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir()
                  if p.name.isdigit() and (p / "_CHECKPOINT_METADATA").is_file())


def resolve_step(workdir: str | Path, step: int | str | None = None) -> int:
    """The checkpoint step that ``step`` names (``None | "best" | "latest" | N``).

    Raises:
      FileNotFoundError: no checkpoint at all. ValueError: ``step`` is not one of those, or
        names a step without a checkpoint (the message lists the ones there are).
    """
    steps = checkpoint_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"{Checkpointer.directory_in(workdir)} holds no checkpoint; train "
                                "first (python -m experiments.run ... --workdir=...)")
    if step is None or step == "best":
        best = _best_evaluated(workdir, steps)
        if best is not None:
            return best
        if step == "best":
            logging.warning("no checkpoint of %s was evaluated; using the latest (step %d)",
                            workdir, steps[-1])
        return steps[-1]
    if step == "latest":
        return steps[-1]
    if isinstance(step, str) and step.isdigit():
        step = int(step)
    if not isinstance(step, int) or isinstance(step, bool):
        raise ValueError(f"step: expected 'best', 'latest' or a step number, got {step!r}")
    if step not in steps:
        raise ValueError(f"step {step}: no checkpoint in {Checkpointer.directory_in(workdir)}; "
                         f"there are {steps}")
    return step


def _best_evaluated(workdir: str | Path, steps: list[int]) -> int | None:
    """The checkpointed step with the best eval record in ``metrics.jsonl`` (first of ties)."""
    records = read_metrics(Path(workdir) / "metrics.jsonl")
    have = set(steps)

    def score(r: Mapping[str, Any]) -> float | None:
        if r.get("eval_accuracy") is not None:
            return float(r["eval_accuracy"])
        if r.get("eval_perplexity") is not None:
            return -float(r["eval_perplexity"])
        return None

    scored = [(score(r), int(r["step"])) for r in records if int(r["step"]) in have]
    scored = [(s, st) for s, st in scored if s is not None]
    if not scored:
        return None
    best = max(s for s, _ in scored)
    return min(st for s, st in scored if s == best)


def load_run(workdir: str | Path, step: int | str | None = None, *,
             data: Mapping[str, Any] | None = None,
             mesh: jax.sharding.Mesh | None = None) -> TrainedRun:
    """The model of ``workdir`` at ``step``, with the run's config and dataset.

    Args:
      workdir: a run directory (``config.json`` and ``checkpoints/``).
      step: ``None`` (best, else latest), ``"best"``, ``"latest"`` or a step number.
      data: fields of ``config.data`` to change when reading the dataset (e.g.
        ``{"eval_split": "validation"}``). Fields that decide the model's shape (vocabulary
        size, tokenizer, length) must not be changed: the restore would then fail on shapes.
      mesh: place the parameters on this mesh as the run's ``config.mesh.rules`` say (e.g.
        :func:`run_mesh`); None: on the first device.

    Raises:
      FileNotFoundError: not a run directory, or no checkpoint.
      ValueError: a bad ``step``. DataNotFoundError: the run's dataset is not on this machine.
      CorruptCheckpointError: the checkpoint's model does not match the fingerprint saved
        with it, or holds NaN/Inf.
    """
    workdir = Path(workdir).absolute()
    cfg = read_config(workdir)
    chosen = resolve_step(workdir, step)
    # No pretrained tables: they only initialise parameters that the checkpoint overwrites
    # (reading a GloVe file of gigabytes for that would be waste).
    data_cfg = {**cfg.data.to_dict(), "glove_path": None, **dict(data or {})}
    ds = load_dataset(data_cfg)
    _check_tokenizer(workdir, ds)
    kw = model_overrides(cfg.model, ds.model_overrides)
    rules = tuple(tuple(r) for r in mesh_config(cfg)["rules"])
    model = _restore_model(Checkpointer.directory_in(workdir) / str(chosen), cfg.model.name, kw,
                           int(cfg.seed), mesh, rules)
    logging.info("loaded %s (attention=%s) from %s at step %d", cfg.model.name,
                 cfg.model.attention, workdir, chosen)
    return TrainedRun(workdir, cfg, chosen, model, ds, mesh)


def load_model(workdir: str | Path, step: int | str | None = None, *,
               mesh: jax.sharding.Mesh | None = None) -> nnx.Module:
    """The trained model of ``workdir`` at ``step`` (default: best, else latest), in eval mode.

    Calling it is calling the trained network, e.g. ``logits, aux = model(images)`` for a
    classifier (``images [B, H, W, C]`` float32, normalised as the data pipeline does) or
    ``model.generate(tokens [B, P], 20)`` for a language model. The run's dataset is read once
    for what it fixes in the model. ``mesh``: as for :func:`load_run`.
    """
    return load_run(workdir, step, mesh=mesh).model


def _check_tokenizer(workdir: Path, ds: Dataset) -> None:
    """The tokenizer the data gives now must be the run's (``summary.json``), or ids differ."""
    summary = workdir / "summary.json"
    trained = json.loads(summary.read_text()).get("tokenizer") if summary.is_file() else None
    now = ds.info.get("tokenizer")
    if trained and now and trained != now:
        raise ValueError(
            f"{workdir} was trained with the {trained!r} tokenizer, but reading its data here "
            f"gives {now!r} (tiktoken's GPT-2 vocabulary could not be loaded? see the warning "
            "above; set TIKTOKEN_CACHE_DIR to a folder holding it)")


def _restore_model(step_dir: Path, name: str, kw: Mapping[str, Any], seed: int,
                   mesh: jax.sharding.Mesh | None, rules: Any) -> nnx.Module:
    """Builds the model abstractly and restores the ``model`` item of ``step_dir`` into it.

    On ``mesh``, each parameter is restored straight into its shards (``rules`` as in the run).
    """
    from astroflax.models import create_model

    # The same RNG streams as the trainer's model, so the restored state has its structure
    # (dropout counters included); the values all come from the checkpoint.
    abstract = nnx.eval_shape(lambda: create_model(
        name, rngs=nnx.Rngs(params=seed, dropout=seed + 1), **kw))
    graphdef, state = nnx.split(abstract)
    if mesh is None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, state)
    else:
        shardings = rule_shardings(state, mesh, rules)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          state, shardings)
    with ocp.StandardCheckpointer() as ckptr:
        try:
            restored = ckptr.restore(step_dir / "model", target)
        except Exception as e:
            raise ValueError(f"cannot restore the model of {step_dir} ({type(e).__name__}: "
                             f"{str(e)[:300]}); is it a checkpoint of this config?") from None
    _verify_model(step_dir, restored)
    model = nnx.merge(graphdef, restored)
    model.eval()
    return model


def _verify_model(step_dir: Path, restored: Any) -> None:
    """The restored model must be finite and hash to the ``model_sha256`` saved beside it.

    Checkpoints written before that fingerprint existed are checked for finiteness only.

    Raises:
      CorruptCheckpointError: damaged or non-finite parameters, naming the step to avoid.
    """
    saved = None
    if (step_dir / "meta").is_dir():
        with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
            saved = dict(ckptr.restore(step_dir / "meta")).get("model_sha256")
    try:
        verify_restored(restored, saved)
    except CorruptCheckpointError as e:
        raise CorruptCheckpointError(
            f"the model checkpoint {step_dir} is unusable: {e}; load another step (e.g. "
            f"step=\"latest\" or an earlier step number; the steps on disk are listed in "
            f"{step_dir.parent})") from None
