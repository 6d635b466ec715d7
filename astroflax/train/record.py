"""A run's set-up record: ``config.json``, and which of its fields a resume may change.

Every run writes its config to ``workdir/config.json`` (:func:`config_json`: plain, key-sorted
JSON). A rerun in a workdir that holds checkpoints resumes them, so its config is compared with
the recorded one first: it may change the fields in :data:`RESUMABLE_FIELDS` (each change is
logged); any other difference is refused before anything is built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from absl import logging

from astroflax.train.checkpoint import Checkpointer
from astroflax.train.config import ConfigError

#: Config fields a resumed run may change: the optimisation schedule, the step counts, how
#: often it logs, evaluates and saves, and where it runs (``mesh.*``: sharded checkpoints
#: restore onto any mesh, iterator positions onto any process count). The model, the data, the
#: seed, the batch size and the optimizer's form would make the checkpoint another run's.
RESUMABLE_FIELDS = (
    "train.learning_rate", "train.schedule", "train.warmup_steps", "train.num_train_steps",
    "train.num_epochs", "train.log_every_steps", "train.eval_every_steps",
    "train.checkpoint_every_steps", "train.keep_checkpoints", "train.eval_batch_size",
    "train.target_accuracy", "train.data_parallel", "distributed", "mesh.*",
)


def config_json(cfg: Any) -> dict[str, Any]:
    """The config as the plain, key-sorted JSON a run writes to ``config.json``.

    Resuming and the study's "finished run of this config" check compare against it.
    """
    return json.loads(cfg.to_json_best_effort(sort_keys=True))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"batch_size": 8}}`` -> ``{"train.batch_size": 8}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def _resumable(field: str) -> bool:
    """Whether a resume may change the dotted ``field`` (``mesh.*`` covers ``mesh.data``)."""
    return any(field == f or (f.endswith(".*") and field.startswith(f[:-1]))
               for f in RESUMABLE_FIELDS)


def check_resumable(workdir: Path, cfg_json: dict[str, Any]) -> None:
    """Checks that ``cfg_json`` may resume ``workdir``'s checkpoints; logs what it changes.

    Raises:
      ConfigError: the workdir holds checkpoints and a field outside
        :data:`RESUMABLE_FIELDS` differs.
    """
    old_path, ckpt_dir = workdir / "config.json", Checkpointer.directory_in(workdir)
    # Without a committed checkpoint there is nothing to resume (a run that stopped before its
    # first save, e.g. on a NaN): any config may start over here.
    if not old_path.exists() or not ckpt_dir.is_dir() or not any(
            p.name.isdigit() for p in ckpt_dir.iterdir()):
        return
    a, b = _flat(json.loads(old_path.read_text())), _flat(cfg_json)
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    refused = [k for k in diff if not _resumable(k)]
    if refused:
        raise ConfigError(
            f"workdir {workdir} holds checkpoints of a different config (fields {refused} "
            f"differ; a resume may change only {list(RESUMABLE_FIELDS)}); pass another "
            "--workdir or delete that one to start over")
    for k in diff:
        logging.warning("resuming with config.%s changed: %r -> %r", k, a.get(k), b.get(k))


def record_config(workdir: Path, cfg: Any, *, write: bool) -> None:
    """Checks that ``cfg`` may resume ``workdir`` (:func:`check_resumable`), then records it.

    ``write``: whether this process writes ``config.json`` (process 0 of a run).

    Raises:
      ConfigError: see :func:`check_resumable`.
    """
    cfg_json = config_json(cfg)
    check_resumable(workdir, cfg_json)
    if write:
        (workdir / "config.json").write_text(json.dumps(cfg_json, indent=2) + "\n")
