"""Metrics of a trained checkpoint on one split: ``python -m experiments.evaluate --workdir=W``.

    python -m experiments.evaluate --workdir=runs/digits_astro            # best checkpoint, test
    python -m experiments.evaluate --workdir=runs/wikitext2_astro --split=validation --step=latest
    python -m experiments.evaluate --workdir=runs/cifar_astro --split=train --step=2000

Prints the metrics as JSON and writes them to ``W/eval_<split>_<step>.json`` (``<step>``: the
number of the checkpoint used). The splits are ``train`` and the one the run evaluates on
(``test``; WikiText-2 also ``validation``). The run's own data settings apply, including the
caps ``data.num_train`` / ``data.num_eval`` of a smoke run. The metrics are those the run logs
(loss, accuracy; perplexity and token accuracy for a language model), summed exactly over the
split with the trainer's eval step. Parameters and batches go on the run's own mesh (its
``config.mesh`` over this machine's devices; ``--mesh=single``: one device).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
from pathlib import Path
from typing import Any

import jax
from absl import app, flags, logging
from flax import nnx

from astroflax.train.config import mesh_config
from astroflax.train.evaluation import evaluate as evaluate_model
from astroflax.train.load import TrainedRun, load_run, read_config, run_mesh
from astroflax.train.mesh import batch_sharding
from astroflax.train.tasks import for_dataset


def define_flags() -> None:
    """The command's flags, defined only when it runs as a command.

    ``--workdir`` and ``--step`` are also flags of other commands (``experiments.run``,
    ``experiments.generate``), and absl refuses a name defined twice in one process.
    """
    flags.DEFINE_string("workdir", None, "Run directory (of experiments.run).")
    flags.DEFINE_string("split", "test", "train, test (or validation for WikiText-2).")
    flags.DEFINE_string("step", "best", "best, latest, or a checkpoint step number.")
    flags.DEFINE_integer("batch_size", None,
                         "Examples per batch (default: the run's eval batch size).")
    flags.DEFINE_enum("mesh", "run", ["run", "single"],
                      "run: the run's config.mesh over this machine's devices; single: one.")


def evaluate(run: TrainedRun, *, batch_size: int | None = None) -> dict[str, float]:
    """Metrics of ``run.model`` over the whole eval split of ``run.dataset`` (padding weighted out).

    Returns:
      ``eval_loss`` (mean NLL per example or per token) and ``eval_accuracy``, or for a
      language model ``eval_perplexity = exp(eval_loss)`` and ``eval_token_accuracy``.
    """
    t = run.config.train
    bs = int(batch_size or t.get("eval_batch_size") or t.batch_size)
    ds = run.dataset
    put: Any = lambda b: b  # noqa: E731  (one device: numpy batches go in as they are)
    if run.mesh is not None:
        mesh_cfg = mesh_config(run.config)
        sharding = batch_sharding(run.mesh, mesh_cfg)
        split = math.prod(run.mesh.shape[a] for a in mesh_cfg["batch_axes"])
        if bs % split:
            raise ValueError(f"batch size {bs} does not split over the {split} devices of the "
                             "run's batch axes; pass --batch_size=a multiple, or --mesh=single")
        put = functools.partial(jax.device_put, device=sharding)
    graphdef, state = nnx.split(run.model)
    return evaluate_model(graphdef, state, ds, for_dataset(ds), bs, put=put)


def load_split(workdir: str | Path, split: str, step: int | str | None,
               mesh: jax.sharding.Mesh | None = None) -> TrainedRun:
    """The run of ``workdir`` at ``step`` with ``split`` as the dataset's eval split.

    ``mesh``: where to place the parameters (see :func:`astroflax.train.load.load_run`).

    Raises:
      ValueError: a split the run's dataset does not have (the message lists its splits).
    """
    if split == "train":
        run = load_run(workdir, step, mesh=mesh)
        return dataclasses.replace(run, dataset=dataclasses.replace(run.dataset,
                                                                    eval=run.dataset.train))
    run = load_run(workdir, step, data={"eval_split": split}, mesh=mesh)
    # Datasets without a choice of eval split ignore data.eval_split: check what was read.
    evaluated = str(run.dataset.info.get("eval_split", ""))
    if not evaluated.startswith(split):
        raise ValueError(f"split {split!r}: {run.dataset.name} evaluates on {evaluated!r}; "
                         f"use --split=train or --split={evaluated.split()[0]}")
    return run


def evaluate_workdir(workdir: str | Path, split: str = "test", step: int | str | None = "best",
                     batch_size: int | None = None, mesh: str = "run") -> dict[str, Any]:
    """Evaluates a run's checkpoint on ``split`` and writes ``eval_<split>_<step>.json``.

    ``mesh``: ``"run"`` places parameters and batches on the run's own mesh (its
    ``config.mesh`` over this machine's devices, batches split over its batch axes);
    ``"single"`` uses one device.

    Returns:
      The written record: ``workdir``, ``split``, ``step`` (the checkpoint's number),
      ``requested_step``, ``num_examples``, ``dataset``, ``model``, ``attention`` and the
      metrics of :func:`evaluate`.
    """
    if mesh not in ("run", "single"):
        raise ValueError(f"mesh: expected 'run' or 'single', got {mesh!r}")
    on = run_mesh(read_config(workdir)) if mesh == "run" else None
    run = load_split(workdir, split, step, on)
    metrics = evaluate(run, batch_size=batch_size)
    record = {"workdir": str(run.workdir), "split": split, "step": run.step,
              "requested_step": step, "num_examples": run.dataset.num_eval,
              "dataset": run.dataset.name, "model": run.config.model.name,
              "attention": run.config.model.attention,
              "num_devices": 1 if on is None else on.size, **metrics}
    path = run.workdir / f"eval_{split}_{run.step}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    logging.info("wrote %s", path)
    return record


def main(argv: list[str]) -> None:
    """Evaluates; exits non-zero with a one-line message on expected failures."""
    del argv
    from astroflax.data import DataNotFoundError

    f = flags.FLAGS
    if not f.workdir:
        sys.exit("error: --workdir is required (the directory of a training run)")
    try:
        record = evaluate_workdir(f.workdir, f.split, f.step, f.batch_size, f.mesh)
    except (FileNotFoundError, ValueError, DataNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
