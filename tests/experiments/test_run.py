"""experiments.run: config resolution, every config, and kill/terminate-then-resume equality."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from astroflax.models import create_model
from astroflax.train import EXIT_PREEMPTED, validate_config
from astroflax.train.config import model_overrides
from astroflax.train.metrics import read_metrics
from benchmarks._common import run_until_logged
from experiments import run
from experiments.configs import common
from tests.helpers import REPO

#: The single configs (a family module, serving one config per variant, is tested in
#: tests/experiments/test_long_range.py).
CONFIGS = sorted(p.stem for p in (REPO / "experiments" / "configs").glob("*.py")
                 if p.stem not in ("__init__", "common", *run.config_families()))
#: What each dataset fixes in the model, standing in for the data in the smoke builds below.
DATA_FIXES = {
    "digits": {"image_size": 8, "in_channels": 1, "num_classes": 10},
    "cifar10": {"image_size": 32, "in_channels": 3, "num_classes": 10},
    "imdb": {"vocab_size": 200, "max_len": 16, "num_classes": 2},
    "wikitext2": {"vocab_size": 200, "max_len": 16},
}


def test_the_paper_matrix_and_the_digits_configs_exist():
    for task in ("cifar", "imdb", "wikitext2"):
        for v in ("astro", "softmax", "kozachkov_iso", "kozachkov_rf", "linear", "astro_no_pe",
                  "astro_no_nonlin"):
            assert f"{task}_{v}" in CONFIGS
    assert {"digits_astro", "digits_softmax"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_loads_documents_its_command_and_its_smoke_model_builds(name):
    import importlib

    mod = importlib.import_module(f"experiments.configs.{name}")
    assert f"python -m experiments.run --config={name}" in mod.__doc__
    assert "Expected" in mod.__doc__
    full = mod.get_config()
    validate_config(full, num_devices=1, process_count=1)
    assert full.name == name
    smoke = mod.get_config("smoke")
    validate_config(smoke, num_devices=8, process_count=1)
    assert smoke.train.num_train_steps <= 10 and smoke.data.num_train <= 64
    kw = model_overrides(smoke.model, DATA_FIXES[smoke.data.name])
    model = nnx.eval_shape(lambda: create_model(smoke.model.name, **kw))
    params = nnx.state(model, nnx.Param)
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) > 0
    with pytest.raises(ValueError, match="smoke"):
        mod.get_config("huge")


def test_bare_names_resolve_into_experiments_configs_and_unknown_ones_list_the_choices():
    assert run.resolve_config_arg("digits_astro:smoke") == (
        f"{REPO / 'experiments' / 'configs' / 'digits_astro.py'}:smoke")
    assert run.resolve_config_arg("cifar_astro.py").endswith("configs/cifar_astro.py")
    with pytest.raises(SystemExit, match="digits_astro"):
        run.resolve_config_arg("cifar_astr")
    configs = REPO / "experiments" / "configs"
    assert run.rewrite_argv(["run.py", "--config=cifar_astro", "--config", "digits_astro:smoke",
                             "--workdir", "w"]) == [
        "run.py", f"--config={configs / 'cifar_astro.py'}", "--config",
        f"{configs / 'digits_astro.py'}:smoke", "--workdir", "w"]


def _cmd(workdir, *extra):
    return [sys.executable, "-m", "experiments.run", "--config=digits_astro:smoke",
            "--config.train.num_train_steps=60", "--config.train.log_every_steps=10",
            "--config.train.checkpoint_every_steps=10", "--config.train.eval_every_steps=20",
            f"--workdir={workdir}", *extra]


def _env(cache):
    # One CPU device, no x64: the runner as a user runs it (not the test suite's settings).
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env["JAX_PLATFORMS"] = "cpu"
    # A persistent compilation cache shared by the four runs halves their start-up; a cached
    # executable is the same program, so results stay bitwise comparable.
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def _run_until(workdir, env, marker, sig):
    """Starts a run, sends ``sig`` once ``marker`` is logged, returns the exit code and log."""
    return run_until_logged(_cmd(workdir), cwd=REPO, env=env, marker=marker, sig=sig,
                            timeout=120)


def test_sigterm_then_sigkill_then_rerun_ends_exactly_like_an_uninterrupted_run(tmp_path):
    ref, env = tmp_path / "ref", _env(tmp_path / "jax_cache")
    subprocess.run(_cmd(ref), cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    expected = json.loads((ref / "summary.json").read_text())

    work = tmp_path / "work"
    rc, log = _run_until(work, env, "step 20/60", signal.SIGTERM)
    assert rc == EXIT_PREEMPTED, log[-2000:]           # SIGTERM: save, then exit "resumable"
    stopped = json.loads((work / "summary.json").read_text())
    assert stopped["status"] == "preempted" and 20 <= stopped["step"] < 60

    rc, log = _run_until(work, env, "step 40/60", signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert f"resumed from the checkpoint at step {stopped['step']}" in log

    done = subprocess.run(_cmd(work), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from the checkpoint at step" in done.stderr
    got = json.loads((work / "summary.json").read_text())
    assert got["status"] == "completed" and got["step"] == 60
    assert got["params_sha256"] == expected["params_sha256"]      # bitwise-equal parameters
    assert got["final"] == expected["final"] and got["best"] == expected["best"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "examples_per_sec"} for r in rs]  # noqa: E731
    assert strip(read_metrics(work / "metrics.jsonl")) == strip(read_metrics(ref / "metrics.jsonl"))


def test_help_exits_0_and_lists_every_config_and_every_config_field_with_a_line():
    out = subprocess.run([sys.executable, "-m", "experiments.run", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    for name in CONFIGS:
        assert any(ln.split()[:1] == [name] for ln in lines), name
    fields = run._flatten(common.base_config("x"))
    helps = common.field_help()                           # from the fields' declarations
    assert set(fields) == set(helps) and all(helps.values())   # no field without its line
    for field in fields:
        line = next(ln for ln in lines if ln.split()[:1] == [field])
        assert helps[field] in line
    assert "--workdir" in out.stdout


@pytest.mark.parametrize("args, expected", [
    (["--config.train.lerning_rate=1"],
     "error: --config.train.lerning_rate: the config has no field 'lerning_rate'; did you mean "
     "learning_rate?"),
    (["--config=digits_astro:bogus"], "config argument 'bogus': expected nothing or 'smoke'"),
    (["--config.train.batch_size=1.5"], "--config.train.batch_size=1.5"),
    (["--config=digits_astro:smoke", "--workdir={tmp}/file"], "is a file, not a directory"),
])
def test_a_bad_command_line_gets_one_paragraph_and_a_non_zero_exit(tmp_path, args, expected):
    (tmp_path / "file").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, out.stderr[-3000:]
