"""Trains and evaluates one experiment: ``python -m experiments.run --config=NAME[:smoke]``.

    python -m experiments.run                                  # offline default: digits_astro
    python -m experiments.run --config=cifar_astro             # a bare name: experiments/configs/
    python -m experiments.run --config=imdb_softmax:smoke --config.train.batch_size=32
    python -m experiments.run --config=listops_cpu_astro       # a family: <task>_<variant>
    python -m experiments.run --config=path/to/my.py --workdir=/tmp/run1
    python -m experiments.run --config=cifar_astro --coordinator_address=host0:1234 \
        --num_processes=2 --process_id=0          # one per host; see BUILD.md (multi-host)

The workdir (default ``runs/<config stem>[_<arg>]``) receives ``config.json``,
``metrics.jsonl``, TensorBoard events, checkpoints, ``curves.png`` and ``summary.json``;
rerunning the same command resumes. One run at a time per workdir: a second is refused while
the first is alive. ``--help`` lists the configs and every ``--config.*`` field.

Expected failures (a mistyped field, a bad value, an unusable workdir, missing data, a
diverged loss) end with one ``error: ...`` paragraph and exit status 1, never a traceback. A
run stopped by SIGTERM or Ctrl-C saves a checkpoint and exits with status 75
(:data:`astroflax.train.EXIT_PREEMPTED`): rerun the same command to resume it.
Intentionally short: the work is in :func:`astroflax.train.train_and_evaluate`.
"""

from __future__ import annotations

import json
import logging as std_logging
import re
import sys
from pathlib import Path
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT = "digits_astro"


def explain_flag_error(e: BaseException, argv: list[str]) -> str:
    """One paragraph for a command line that does not parse (no traceback).

    Covers a mistyped ``--config.*`` field (with ml_collections' "did you mean"), a value of
    the wrong type, a config argument the config rejects (``:bogus``) and unknown flags.
    """
    text = str(e).strip()
    if "Error whilst parsing config file" in text:
        given = next((a for a in argv if a.startswith("--config=")), "--config")
        last = [ln.strip() for ln in text.splitlines() if ln.strip()][-1]
        return f"{given}: {last} (python -m experiments.run --help lists the configs)"
    if isinstance(e, AttributeError | KeyError):  # an unknown --config.* field
        typo = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
        wrong = typo.group(2) if typo else text.splitlines()[0].strip("'\"\\ ")
        given = next((a.partition("=")[0] for a in argv
                      if re.match(rf"--config\.(\w+\.)*{re.escape(wrong)}(\.|=|$)", a)),
                     "--config")
        hint = f"; did you mean {typo.group(1)}?" if typo else ""
        return (f"{given}: the config has no field {wrong!r}{hint} (python -m experiments.run "
                "--help lists every field)")
    first = text.splitlines()[0] if text else type(e).__name__
    return f"{first} (python -m experiments.run --help lists the flags and config fields)"


try:
    _CONFIG = config_flags.DEFINE_config_file(
        "config", str(CONFIGS / f"{DEFAULT}.py"),
        "Config file, or a bare name in experiments/configs/, with an optional ':smoke'.",
        lock_config=True)
except (AttributeError, KeyError) as _e:  # it reads sys.argv's --config.* fields when defined
    sys.exit(f"error: {explain_flag_error(_e, sys.argv)}")
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

    A value naming an existing file is kept. A bare name with no file of its own may name a
    config *family*, one module serving every attention variant: ``listops_softmax[:smoke]``
    -> ``<repo>/experiments/configs/listops.py:softmax[:smoke]`` (the longest family prefix
    wins, so ``listops_cpu_astro`` is ``listops_cpu.py`` with ``astro``; the module checks the
    variant). An unknown bare name lists the configs.
    """
    path, sep, arg = value.partition(":")
    if Path(path).is_file():
        return value
    stem = Path(path).name.removesuffix(".py")
    candidate = CONFIGS / f"{stem}.py"
    if "/" not in path and candidate.is_file():
        return f"{candidate}{sep}{arg}"
    parts = stem.split("_")
    for i in range(len(parts) - 1, 0, -1):
        family = CONFIGS / f"{'_'.join(parts[:i])}.py"
        if "/" not in path and family.stem in config_families() and family.is_file():
            return f"{family}:{'_'.join(parts[i:])}{sep}{arg}"
    raise SystemExit(f"--config={value}: no such file or config; configs: {config_names()}")


def rewrite_argv(argv: list[str]) -> list[str]:
    """``argv`` with bare config names resolved (``--config=NAME`` and ``--config NAME``)."""
    out = list(argv)
    for i in range(1, len(out)):
        if out[i].startswith("--config="):
            out[i] = "--config=" + resolve_config_arg(out[i].removeprefix("--config="))
        elif out[i - 1] == "--config" and i > 1:
            out[i] = resolve_config_arg(out[i])
    return out


def config_families() -> list[str]:
    """Config modules that serve one config per attention variant (``FAMILY = True`` in them).

    Read from the files' text, not imported: resolving a name must not import JAX.
    """
    return sorted(p.stem for p in CONFIGS.glob("*.py")
                  if re.search(r"^FAMILY = True", p.read_text(), re.MULTILINE))


def config_names() -> list[str]:
    """The configs of experiments/configs/ (bare names ``--config`` accepts).

    A family module stands for its variants: ``listops_<variant>``.
    """
    families = set(config_families())
    return sorted(p.stem + ("_<variant>" if p.stem in families else "")
                  for p in CONFIGS.glob("*.py") if p.stem not in ("__init__", "common"))


def _flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if hasattr(v, "items"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def help_text(config_arg: str | None = None) -> str:
    """What ``--help`` prints: usage, the configs, the flags and every ``--config.*`` field.

    Field defaults are those of ``config_arg`` (a ``--config`` value; default digits_astro).
    """
    import importlib.util

    lines = [__doc__.strip(), "", "Configs (--config=NAME[:smoke]):"]
    for name in config_names():
        file = CONFIGS / f"{name.removesuffix('_<variant>')}.py"
        doc = file.read_text().split('"""')[1].strip().splitlines()[0]
        lines.append(f"  {name:28s} {doc}")
    lines += ["", "Flags:"]
    for flag in (_CONFIG, _WORKDIR, _COORDINATOR, _NUM_PROCESSES, _PROCESS_ID, _DISTRIBUTED):
        f = flags.FLAGS[flag.name]
        lines.append(f"  --{f.name:26s} {f.help}")
    path, _, arg = resolve_config_arg(config_arg or DEFAULT).partition(":")
    spec = importlib.util.spec_from_file_location("_help_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config(arg or None)
    lines += ["", f"Config fields (--config.FIELD=VALUE; defaults of {Path(path).stem}"
              f"{':' + arg if arg else ''}):"]
    from experiments.configs.common import field_help  # imports the models (jax): help only

    helps = field_help()
    for field, value in _flatten(cfg).items():
        lines.append(f"  {field:28s} {helps.get(field, '')} [{value!r}]")
    return "\n".join(lines) + "\n"


def parse_flags(argv: list[str]) -> list[str]:
    """``absl.app.run``'s flag parser, with :func:`explain_flag_error` instead of tracebacks."""
    try:
        rest = flags.FLAGS(argv)
        _CONFIG.value  # noqa: B018 - loads the config file now, inside the try
    except Exception as e:
        raise SystemExit(f"error: {explain_flag_error(e, argv)}") from None
    return rest


def wants_help(argv: list[str]) -> bool:
    """Whether ``argv`` asks for help (``--help``, ``-h``, ``--helpfull``, ``--helpshort``)."""
    return any(a in ("--help", "-h", "-?", "--helpfull", "--helpshort") for a in argv[1:])


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
    from astroflax.train.workdir import WorkdirError

    config = _CONFIG.value
    maybe_initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                     _DISTRIBUTED.value or bool(config.get("distributed", False)))
    filename, _, arg = config_flags.get_config_filename(flags.FLAGS["config"]).partition(":")
    if not flags.FLAGS["config"].present:
        logging.info("no --config given: running the offline default %s (scikit-learn digits)",
                     DEFAULT)
    # listops.py:softmax:smoke (a family's variant) -> runs/listops_softmax_smoke
    stem = Path(filename).stem + (f"_{arg.replace(':', '_')}" if arg else "")
    workdir = _WORKDIR.value or str(Path("runs") / stem)
    logging.info("config %s -> workdir %s", stem, workdir)
    try:
        summary = train_and_evaluate(config, workdir)
    except (ConfigError, DataNotFoundError, NonFiniteLossError, WorkdirError) as e:
        sys.exit(f"error: {e}")
    import jax

    if jax.process_index() == 0:
        print(json.dumps(summary, indent=2))
    if summary["status"] == "preempted":      # saved and stopped (SIGTERM, Ctrl-C): resumable
        sys.exit(EXIT_PREEMPTED)


if __name__ == "__main__":
    try:
        sys.argv = rewrite_argv(sys.argv)
    except SystemExit as e:  # an unknown config name: one line, not absl's usage dump
        sys.exit(f"error: {e}")
    if wants_help(sys.argv):
        given = next((a.partition("=")[2] for a in sys.argv if a.startswith("--config=")), None)
        sys.stdout.write(help_text(given))
        sys.exit(0)
    app.run(main, flags_parser=parse_flags)
