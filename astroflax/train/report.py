"""What a run reports: ``summary.json``, ``curves.png`` and the parameter fingerprint.

What a run leaves in its workdir: ``config.json`` (:mod:`astroflax.train.record`),
``metrics.jsonl`` and ``tensorboard/`` (:mod:`astroflax.train.metrics`), ``checkpoints/``
(:class:`astroflax.train.checkpoint.Checkpointer`), ``curves.png`` and ``summary.json``.
Rerunning with the same workdir resumes from the newest readable checkpoint (model, optimizer,
dropout RNG, data-iterator position, the run's counters), and an interrupted-then-resumed run
ends with exactly the parameters and the metrics of an uninterrupted one.

What the summary and ``metrics.jsonl`` report (each number means one thing):

- ``train_loss``: the mean training loss over the ``log_every_steps`` steps ending at the
  record's step (records at multiples of ``log_every_steps``; the run's last step closes a
  possibly shorter interval). Eval-only records carry no training fields.
- ``examples_per_sec``: examples trained per second spent in train steps (no compile, eval or
  checkpoint time), over all sessions of the run.
- ``compile_time_s``: seconds spent compiling the train step, summed over all sessions.
- ``wall_time_s``: seconds from the call of ``train_and_evaluate`` (config checks, data, model,
  compile, training, evaluation, checkpoints) to the summary, summed over all sessions.
- ``params_sha256``: :func:`params_fingerprint` of the final parameters (None when the run
  failed): two runs ended bitwise equal iff these are equal.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from astroflax.data import Dataset
from astroflax.train import metrics as metrics_lib
from astroflax.train.checkpoint import tree_fingerprint
from astroflax.train.tasks import for_dataset


def summarise(cfg: Any, ds: Dataset, records: Sequence[dict[str, Any]], *, status: str,
              step: int, total_steps: int, epoch: float, num_params: int, wall_time_s: float,
              examples_per_sec: float | None, compile_time_s: float | None,
              devices: int) -> dict[str, Any]:
    """The run's summary (without ``params_sha256``) from its ``metrics.jsonl`` ``records``.

    ``final``: the last eval record's ``eval_*`` numbers; ``best``: the step, epoch and value
    of the best eval by the task's metric (the first of ties); ``epochs_to_target`` for tasks
    with an accuracy target. The other fields are the arguments as given.
    """
    task = for_dataset(ds)
    key = task.metric
    evals = [r for r in records if r.get(key) is not None]
    eval_keys = [k for k in (evals[-1] if evals else {}) if k.startswith("eval_")]
    best = None
    for r in evals:   # the first of tied evals
        if best is None or task.better(r[key], best[key]):
            best = r
    target = float(cfg.train.target_accuracy)
    out: dict[str, Any] = {
        "config": cfg.get("name", None), "status": status, "dataset": ds.name, "task": ds.task,
        "model": cfg.model.name, "attention": cfg.model.attention,
        "step": step, "total_steps": total_steps, "epochs": epoch,
        "final": {k: evals[-1][k] for k in eval_keys} if evals else None,
        "best": ({"step": best["step"], "epoch": best["epoch"], key: best[key]}
                 if best else None),
        "num_params": num_params, "wall_time_s": round(wall_time_s, 2),
        "examples_per_sec": examples_per_sec, "compile_time_s": compile_time_s,
        "num_devices": devices, "backend": jax.default_backend(),
        "eval_split": ds.info.get("eval_split"),
    }
    if task.has_accuracy_target:
        out["target_accuracy"] = target
        out["epochs_to_target"] = metrics_lib.epochs_to_target(records, target)
    if "tokenizer" in ds.info:
        out["tokenizer"] = ds.info["tokenizer"]
    return out


def params_fingerprint(state: nnx.State) -> str:
    """SHA-256 of the model's parameters (path order, raw bytes): equal iff bitwise equal.

    A collective when parameters span several processes (every process must call it).
    """
    return tree_fingerprint(nnx.filter_state(state.model, nnx.Param))


def write_reports(workdir: Path, cfg: Any, summary: dict[str, Any],
                  records: Sequence[dict[str, Any]], *, eval_key: str) -> None:
    """Writes ``workdir/summary.json`` and plots ``records`` to ``workdir/curves.png``.

    ``eval_key``: the eval metric the plot shows (the task's). A plotting failure is ignored:
    it must not hide the result.
    """
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with contextlib.suppress(Exception):
        metrics_lib.plot_curves(
            records, workdir / "curves.png", eval_key=eval_key,
            title=f"{cfg.get('name', None) or cfg.model.name} ({cfg.model.attention})")
