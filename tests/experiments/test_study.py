"""``python -m experiments.study``: smoke studies end to end, their statistics, kill + resume."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats

from astroflax.train.checkpoint import Checkpointer
from experiments import study as study_cli
from experiments.studies import StudyError, list_studies, load_study
from experiments.studies._stats import (
    aggregate_arm,
    epochs_to_target,
    paired_difference,
    t_interval,
)
from tests.helpers import REPO


def _run_study(spec, workdir, env, *extra):
    cmd = [sys.executable, "-m", "experiments.study", f"--study={spec}", f"--workdir={workdir}",
           *extra]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e["ASTROFLAX_JAX_CACHE"] = str(tmp_path_factory.mktemp("jax_cache"))
    e.pop("XLA_FLAGS", None)   # one CPU device, as users run it
    return e


@pytest.fixture(scope="module")
def digits_smoke(tmp_path_factory, env):
    workdir = tmp_path_factory.mktemp("digits_smoke")
    return workdir, _run_study("digits_variants:smoke", workdir, env)


# ----------------------------------------------------------------- statistics, by hand
def test_t_interval_matches_scipy_and_hand_values():
    t = t_interval([0.9, 0.95])
    # n = 2: sd = 0.05/sqrt(2); half = t_{0.975,1} · sd / sqrt(2) = 12.706 · 0.025.
    assert t["mean"] == pytest.approx(0.925) and t["sd"] == pytest.approx(0.05 / math.sqrt(2))
    assert t["ci95"] == pytest.approx([0.925 - 12.706 * 0.025, 0.925 + 12.706 * 0.025])
    x = [3.0, 4.5, 2.0, 5.5, 4.0]
    ref = stats.t.interval(0.95, 4, loc=np.mean(x), scale=stats.sem(x))
    assert t_interval(x)["ci95"] == pytest.approx(list(ref), abs=2e-3)
    lo, hi = t_interval(x)["boot95"]
    assert min(x) <= lo < np.mean(x) < hi <= max(x)
    assert t_interval([1.0])["ci95"] is None and t_interval([])["mean"] is None


def test_paired_difference_uses_common_seeds_only():
    d = paired_difference({0: 0.9, 1: 0.8, 2: 0.7}, {0: 0.85, 1: 0.8, 5: 0.1})
    assert d["seeds"] == [0, 1]
    assert d["mean"] == pytest.approx(0.025)   # (0.05 + 0.0) / 2


def test_epochs_to_target_and_reach_counts():
    assert epochs_to_target([[1, 0.5], [2, 0.86], [3, 0.99]], 0.85) == 2.0
    assert epochs_to_target([[1, 0.5]], 0.85) is None
    runs = [{"seed": 0, "final": 0.9, "best": 0.95, "num_params": 7,
             "curve": [[1, 0.8], [2, 0.9]]},
            {"seed": 1, "final": 0.7, "best": 0.7, "num_params": 7,
             "curve": [[1, 0.6], [2, 0.7]]}]
    agg = aggregate_arm(runs, targets=(0.85,))
    e = agg["epochs_to_target"]["0.85"]
    assert (e["reached"], e["of"], e["epochs"]["mean"]) == (1, 2, 2.0)
    assert agg["final"]["mean"] == pytest.approx(0.8)
    assert agg["best"]["mean"] == pytest.approx(0.825)


# ----------------------------------------------------------------- bad input
def test_unknown_study_lists_the_studies():
    assert {"biology_alpha", "code_lm", "digits_variants"} <= set(list_studies())
    with pytest.raises(StudyError, match=r"no study 'nope'.*digits_variants"):
        load_study("nope")
    with pytest.raises(StudyError, match="expected nothing or 'smoke'"):
        load_study("digits_variants:big")


def test_bad_override_and_missing_data_fail_before_training(tmp_path):
    for args, message in [
        (["--override.model.no_such_field=3"], "no field 'model.no_such_field'"),
        (["--override.train.learning_rate=-1"], "learning_rate"),
        ([f"--override.data.data_dir={tmp_path / 'absent'}"], "data is missing"),
    ]:
        with pytest.raises(SystemExit, match=message):
            study_cli.main(["--study=code_lm:smoke", f"--workdir={tmp_path / 'w'}", *args])
        assert not (tmp_path / "w").exists()      # nothing was trained
    with pytest.raises(StudyError, match="unknown argument"):
        study_cli.parse_args(["--study=x", "--bogus"])
    assert study_cli.parse_args(["--study=x", "--override.a.b=0.5"])["overrides"] == {"a.b": 0.5}


# ----------------------------------------------------------------- smoke studies end to end
def test_digits_smoke_aggregates_equal_hand_computed(digits_smoke):
    workdir, res = digits_smoke
    assert res["runs_finished"] == res["runs_total"] == 4
    finals = {}
    for arm in ("softmax", "astro"):
        for seed in (0, 1):
            s = json.loads((workdir / arm / f"seed_{seed}" / "summary.json").read_text())
            assert s["status"] == "completed" and s["step"] == 6
            finals[arm, seed] = s["final"]["eval_accuracy"]
    for arm in ("softmax", "astro"):
        a, b = finals[arm, 0], finals[arm, 1]
        agg = res["arms"][arm]["final"]
        half = 12.706 * abs(a - b) / 2           # t_{0.975,1} · (|a-b|/√2) / √2
        assert agg["mean"] == pytest.approx((a + b) / 2, abs=1e-12)
        assert agg["ci95"] == pytest.approx([(a + b) / 2 - half, (a + b) / 2 + half], abs=1e-3)
    diff = res["arms"]["astro"]["vs_reference"]["final"]
    assert diff["mean"] == pytest.approx(
        ((finals["astro", 0] - finals["softmax", 0]) + (finals["astro", 1] - finals["softmax", 1]))
        / 2, abs=1e-12)
    md = (workdir / "results.md").read_text()
    assert "attention softmax -> astro (vs softmax)" in md and "| softmax | reference |" in md
    assert (workdir / "curves.png").stat().st_size > 0 and (workdir / "final.png").exists()
    assert "wall_time_s" not in json.dumps(res)      # timings live in timing.json
    assert set(json.loads((workdir / "timing.json").read_text())["runs"]) == {
        "softmax/seed_0", "softmax/seed_1", "astro/seed_0", "astro/seed_1"}


def test_killed_study_resumes_to_the_same_results(digits_smoke, tmp_path, env):
    _, uninterrupted = digits_smoke
    workdir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "experiments.study", "--study=digits_variants:smoke",
           f"--workdir={workdir}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Kill (SIGKILL: no clean-up) once the second run has its mid-run checkpoint (step 3 of 6).
    mid = Checkpointer.directory_in(workdir / "astro" / "seed_0") / "3"
    deadline = time.time() + 300
    while not mid.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / "results.json").exists()
    assert json.loads((workdir / "softmax" / "seed_0" / "summary.json").read_text())[
        "status"] == "completed"
    resumed = _run_study("digits_variants:smoke", workdir, env)
    assert resumed == uninterrupted


def test_code_lm_smoke_reports_validation_and_test_perplexity(tmp_path, env):
    res = _run_study("code_lm:smoke", tmp_path, env)
    assert res["runs_finished"] == 4 and res["metric"] == "eval_perplexity"
    for arm in ("softmax", "astro"):
        runs = [r for r in res["runs"] if r["arm"] == arm]
        tests = [r["extra"]["test"] for r in runs]
        assert all(math.isfinite(x) and x > 1.0 for x in tests)
        assert res["arms"][arm]["extra"]["test"]["mean"] == pytest.approx(np.mean(tests))
        assert res["arms"][arm]["final"]["mean"] == pytest.approx(
            np.mean([r["final"] for r in runs]))
    run = res["runs"][0]
    path = tmp_path / run["arm"] / f"seed_{run['seed']}"
    assert run["extra"]["test"] == json.loads(
        (path / "extra_eval.json").read_text())["test"]["eval_perplexity"]
    # The evaluator reproduces the run's own last evaluation on its own split exactly.
    code = ("import json, sys; from pathlib import Path; from experiments.study import "
            "evaluate_split; print(json.dumps(evaluate_split(Path(sys.argv[1]), 'validation')))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    again = json.loads(out.stdout.strip().splitlines()[-1])
    summary = json.loads((path / "summary.json").read_text())
    assert again["eval_loss"] == summary["final"]["eval_loss"] and again["step"] == 6


def test_m_div_arms_change_only_m_div_against_their_own_variant():
    from experiments.studies import m_div_arm

    arm = m_div_arm("astro", "500·D = 16000", 16)
    assert (arm.name, arm.reference, arm.changes) == (
        "astro-m_div=m", "astro", "m_div 500·D = 16000 -> m = 16")
    assert dict(arm.overrides) == {"model.attention": "astro", "model.m_div": "m"}
    for name in ("digits_variants", "code_lm"):
        arms = {a.name: a for a in load_study(name).arms}
        for a in arms.values():
            if a.name.endswith("-m_div=m"):
                ref = arms[a.reference]
                assert dict(a.overrides) == {**ref.overrides, "model.m_div": "m"}, a.name
