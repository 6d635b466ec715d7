"""Trains and evaluates one experiment: ``python -m experiments.run --config=NAME[:smoke]``.

    python -m experiments.run                                  # offline default: digits_astro
    python -m experiments.run --config=cifar_astro             # a bare name: experiments/configs/
    python -m experiments.run --config=imdb_softmax:smoke --config.train.batch_size=32
    python -m experiments.run --config=path/to/my.py --workdir=/tmp/run1
    python -m experiments.run --config=cifar_astro --coordinator_address=host0:1234 \
        --num_processes=2 --process_id=0          # one per host; see BUILD.md (multi-host)

The workdir (default ``runs/<config stem>[_<arg>]``) receives ``config.json``,
``metrics.jsonl``, TensorBoard events, checkpoints, ``curves.png`` and ``summary.json``;
rerunning the same command resumes. Intentionally short: the work is in
:func:`astroflax.train.train_and_evaluate`.
"""

from __future__ import annotations

import json
import logging as std_logging
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT = "digits_astro"

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(CONFIGS / f"{DEFAULT}.py"),
    "Config file, or a bare name in experiments/configs/, with an optional ':smoke'.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default runs/<config stem>).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "Multi-process runs: host:port of process 0 (or env JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process runs: process count (or env JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-process runs: this process's id (or env JAX_PROCESS_ID).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Start jax.distributed even without coordinator flags/env: a bare initialize() "
    "auto-detects TPU pod slices and SLURM; or env ASTROFLAX_DISTRIBUTED=1, or "
    "--config.distributed=True.")


def resolve_config_arg(value: str) -> str:
    """``cifar_astro[.py][:arg]`` -> ``<repo>/experiments/configs/cifar_astro.py[:arg]``.

    A value naming an existing file is kept; an unknown bare name lists the configs.
    """
    path, sep, arg = value.partition(":")
    if Path(path).is_file():
        return value
    stem = Path(path).name.removesuffix(".py")
    candidate = CONFIGS / f"{stem}.py"
    if "/" in path or not candidate.is_file():
        names = sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem not in ("__init__", "common"))
        raise SystemExit(f"--config={value}: no such file or config; configs: {names}")
    return f"{candidate}{sep}{arg}"


def rewrite_argv(argv: list[str]) -> list[str]:
    """``argv`` with bare config names resolved (``--config=NAME`` and ``--config NAME``)."""
    out = list(argv)
    for i in range(1, len(out)):
        if out[i].startswith("--config="):
            out[i] = "--config=" + resolve_config_arg(out[i].removeprefix("--config="))
        elif out[i - 1] == "--config" and i > 1:
            out[i] = resolve_config_arg(out[i])
    return out


class _QuietLibraries(std_logging.Filter):
    """Drops orbax's and JAX's per-operation INFO lines so the progress line stays readable."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        noisy = "/orbax/" in record.pathname or "xla_bridge" in record.pathname
        return record.levelno >= std_logging.WARNING or not noisy


def main(argv: list[str]) -> None:
    """Runs the experiment; exits non-zero with a one-paragraph message on expected failures."""
    del argv
    logging.get_absl_handler().addFilter(_QuietLibraries())
    from astroflax.data import DataNotFoundError
    from astroflax.train import EXIT_PREEMPTED, ConfigError, NonFiniteLossError, train_and_evaluate
    from astroflax.train.distributed import maybe_initialize

    config = _CONFIG.value
    maybe_initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                     _DISTRIBUTED.value or bool(config.get("distributed", False)))
    filename, _, arg = config_flags.get_config_filename(flags.FLAGS["config"]).partition(":")
    if not flags.FLAGS["config"].present:
        logging.info("no --config given: running the offline default %s (scikit-learn digits)",
                     DEFAULT)
    stem = Path(filename).stem + (f"_{arg}" if arg else "")
    workdir = _WORKDIR.value or str(Path("runs") / stem)
    logging.info("config %s -> workdir %s", stem, workdir)
    try:
        summary = train_and_evaluate(config, workdir)
    except (ConfigError, DataNotFoundError, NonFiniteLossError) as e:
        sys.exit(f"error: {e}")
    import jax

    if jax.process_index() == 0:
        print(json.dumps(summary, indent=2))
    if summary["status"] == "preempted":      # saved and stopped (SIGTERM, Ctrl-C): resumable
        sys.exit(EXIT_PREEMPTED)


if __name__ == "__main__":
    sys.argv = rewrite_argv(sys.argv)
    app.run(main)
