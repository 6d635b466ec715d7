"""Runs a study (arms × seeds) and reports it: ``python -m experiments.study --study=NAME``.

    python -m experiments.study --study=digits_variants            # -> studies/digits_variants
    python -m experiments.study --study=code_lm:smoke --workdir=/tmp/s
    python -m experiments.study --study=digits_variants --override.train.num_epochs=5
    python -m experiments.study --study=digits_variants --report_only   # tables of finished runs

Studies live in ``experiments/studies/`` (see its ``__init__``). Each arm × seed trains through
:func:`astroflax.train.train_and_evaluate` in ``WORKDIR/<arm>/seed_<n>``; rerunning the same
command skips finished runs and resumes an interrupted one from its checkpoint, so a study
survives a kill. Every config is built and validated, and the data checked, before anything
trains. The workdir receives ``results.json`` (every run's metrics and the aggregates; no
timings, so an interrupted-and-resumed study writes the same file as an uninterrupted one),
``timing.json``, ``results.md``, ``curves.png`` and ``final.png``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from astroflax.train.tasks import for_dataset
from experiments.studies import ComputedStudy, GridStudy, StudyError, load_study, parse_value

USAGE = ("usage: python -m experiments.study --study=NAME[:smoke] [--workdir=DIR] "
         "[--override.FIELD=VALUE ...] [--report_only]")


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``--study``, ``--workdir``, ``--report_only`` and ``--override.<dotted>=<value>`` flags."""
    out: dict[str, Any] = {"study": None, "workdir": None, "report_only": False, "overrides": {}}
    for a in argv:
        key, eq, value = a.partition("=")
        if key == "--report_only" and not eq:
            out["report_only"] = True
        elif key in ("--study", "--workdir") and eq:
            out[key[2:]] = value
        elif key.startswith("--override.") and eq and len(key) > len("--override."):
            out["overrides"][key.removeprefix("--override.")] = parse_value(value)
        else:
            raise StudyError(f"unknown argument {a!r}\n{USAGE}")
    if not out["study"]:
        raise StudyError(f"--study is required\n{USAGE}")
    return out


def enable_compilation_cache(path: Path | None = None) -> None:
    """Caches compiled XLA programs on disk, shared by every run of every study.

    The runs of one arm differ only in their seed, which is data, not program: with the cache
    every run after an arm's first skips compilation (on 2 CPU cores that is most of a short
    run's time). ``path`` defaults to ``$ASTROFLAX_JAX_CACHE`` or
    ``~/.cache/astroflax/jax_compilation``. The cached executable is the one a fresh compile
    produces, so results do not depend on it.
    """
    import os

    import jax

    path = path or Path(os.environ.get("ASTROFLAX_JAX_CACHE",
                                       Path.home() / ".cache/astroflax/jax_compilation"))
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_dir(workdir: Path, arm: str, seed: int) -> Path:
    """Where one arm × seed run lives."""
    return workdir / arm / f"seed_{seed}"


def _finished(path: Path, cfg_json: Mapping[str, Any]) -> bool:
    """A completed run of exactly this config is in ``path``."""
    try:
        summary = json.loads((path / "summary.json").read_text())
        same = json.loads((path / "config.json").read_text()) == cfg_json
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return same and summary.get("status") == "completed"


def prepare(study: GridStudy, overrides: Mapping[str, Any]) -> dict[tuple[str, int], Any]:
    """Every run's config, validated, with its data checked: all errors before any training.

    Raises:
      StudyError: a bad override or config value, or data that is not on disk.
    """
    from astroflax.data import DataNotFoundError, load_dataset
    from astroflax.train import ConfigError
    from astroflax.train.config import validate_config

    configs = {(arm.name, s): study.config(arm, s, overrides)
               for s in study.seeds for arm in study.arms}
    seen_data: list[dict[str, Any]] = []
    for arm in study.arms:
        cfg = configs[(arm.name, study.seeds[0])]
        try:
            validate_config(cfg)
        except ConfigError as e:
            raise StudyError(f"arm {arm.name}: {e}") from None
        data = cfg.data.to_dict()
        splits = [data] + [{**data, "eval_split": s} for s in study.extra_eval]
        for d in splits:
            if d in seen_data:
                continue
            seen_data.append(d)
            try:
                load_dataset(d)
            except DataNotFoundError as e:
                raise StudyError(f"study {study.name} (arm {arm.name}): the data is missing: "
                                 f"{e}") from None
    return configs


def evaluate_split(path: Path, split: str) -> dict[str, float]:
    """Metrics of a finished run's final parameters (its latest checkpoint) on ``split``.

    Exact sums over the split with the trainer's eval step (``experiments.evaluate``), as the
    run's own evaluations.
    """
    from experiments.evaluate import evaluate, load_split

    run = load_split(path, split, "latest")
    metrics = evaluate(run)
    key = for_dataset(run.dataset).metric
    return {"eval_loss": metrics["eval_loss"], key: metrics[key], "step": run.step}


def run_record(study: GridStudy, arm: str, seed: int, path: Path) -> dict[str, Any]:
    """One finished run as the report needs it (deterministic fields only)."""
    from astroflax.train.metrics import read_metrics

    summary = json.loads((path / "summary.json").read_text())
    key = study.metric
    curve = [[r["epoch"], r[key]] for r in read_metrics(path / "metrics.jsonl")
             if r.get(key) is not None]
    extra_path = path / "extra_eval.json"
    extra = json.loads(extra_path.read_text()) if extra_path.exists() else {}
    return {"arm": arm, "seed": seed, "final": summary["final"][key],
            "best": summary["best"][key], "final_metrics": summary["final"],
            "curve": curve, "extra": {s: m[key] for s, m in extra.items()},
            "num_params": summary["num_params"], "steps": summary["step"],
            "epochs": summary["epochs"], "params_sha256": summary["params_sha256"]}


def _progress(done: int, total: int, arm: str, seed: int, line: str, elapsed: float,
              trained: list[float]) -> None:
    from astroflax.train.metrics import format_duration

    per_run = sum(trained) / len(trained) if trained else 0.0
    eta = format_duration(per_run * (total - done)) if trained else "-"
    print(f"[{done}/{total} runs] {arm} seed {seed}: {line} | elapsed "
          f"{format_duration(elapsed)} | ETA {eta}", flush=True)


def run_grid(study: GridStudy, workdir: Path, overrides: Mapping[str, Any] | None = None, *,
             report_only: bool = False) -> dict[str, Any]:
    """Trains every missing run (seed-major: all arms of a seed before the next seed), reports.

    Returns:
      The contents of ``results.json``.

    Raises:
      StudyError: bad input (before training), or a run stopped by SIGTERM (rerun resumes).
    """
    from astroflax.train import train_and_evaluate
    from astroflax.train.loop import config_json
    from experiments.studies import _report

    configs = prepare(study, overrides or {})
    enable_compilation_cache()
    workdir.mkdir(parents=True, exist_ok=True)
    grid = [(arm.name, s) for s in study.seeds for arm in study.arms]
    start, trained = time.time(), []
    done = []
    for i, (arm, seed) in enumerate(grid, 1):
        cfg, path = configs[(arm, seed)], run_dir(workdir, arm, seed)
        if not _finished(path, config_json(cfg)):
            if report_only:
                continue
            t0 = time.time()
            summary = train_and_evaluate(cfg, path)
            if summary["status"] != "completed":
                raise StudyError(f"run {arm} seed {seed} stopped ({summary['status']}); rerun "
                                 "the same command to resume it")
            trained.append(time.time() - t0)
            line = f"{study.metric} {summary['final'][study.metric]:.4f} " \
                   f"({time.time() - t0:.0f} s)"
        else:
            line = "done earlier"
        extra_path = path / "extra_eval.json"
        if study.extra_eval and not extra_path.exists():
            extra = {s: evaluate_split(path, s) for s in study.extra_eval}
            extra_path.write_text(json.dumps(extra, indent=1) + "\n")
        done.append((arm, seed))
        _progress(i, len(grid), arm, seed, line, time.time() - start, trained)
    runs = [run_record(study, a, s, run_dir(workdir, a, s)) for a, s in done]
    results = _report.write_reports(study, runs, workdir, overrides or {})
    print(f"wrote {workdir}/results.json, results.md, curves.png, final.png", flush=True)
    return results


def main(argv: Sequence[str]) -> None:
    """Parses the arguments and runs the study; bad input exits with one clear message."""
    try:
        args = parse_args(argv)
        study = load_study(args["study"])
        name = args["study"].replace(":", "_")
        workdir = Path(args["workdir"] or Path("studies") / name)
        if isinstance(study, ComputedStudy):
            if args["overrides"]:
                raise StudyError(f"study {study.name} is not a training grid; it takes no "
                                 "--override")
            study.run(workdir)
            print(f"wrote {workdir}/results.json, results.md", flush=True)
        else:
            run_grid(study, workdir, args["overrides"], report_only=args["report_only"])
    except StudyError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # the study prints one progress line per run
    main(sys.argv[1:])
