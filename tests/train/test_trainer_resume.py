"""What a resumed, interrupted or diverged run reports (digits smoke runs, one device, in process).

Each test states one promise of ``train_and_evaluate``: Ctrl-C saves and stops resumably, a
resume compiles the train step once, reported numbers mean one thing, and the advice of the
NaN stop can be followed.
"""

import json
import logging
import math
import signal
import time

import numpy as np
import pytest

from astroflax.train import ConfigError, NonFiniteLossError, train_and_evaluate
from astroflax.train import build as build_lib
from astroflax.train import loop as loop_lib
from astroflax.train import report as report_lib
from astroflax.train.checkpoint import Checkpointer
from astroflax.train.metrics import read_metrics
from experiments.configs import common


def cfg(steps=8, log_every=4, **train):
    """Digits smoke (64 examples, batch 16: 4 steps an epoch) on one device.

    ``log_every_steps=4`` against ``eval_every_steps=3``: log and eval points interleave.
    """
    c = common.digits_config("astro", "digits_astro", "smoke")
    c.train.data_parallel = False
    c.train.num_train_steps, c.train.log_every_steps = steps, log_every
    c.train.eval_every_steps, c.train.checkpoint_every_steps = 3, 100
    for k, v in train.items():
        c.train[k] = v
    return c


def without_speed(records):
    return [{k: v for k, v in r.items() if k != "examples_per_sec"} for r in records]


class CompileLog(logging.Handler):
    """Collects JAX's "Compiling <function>" log lines (``jax_log_compiles``)."""

    def __init__(self):
        super().__init__()
        self.names = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            self.names.append(msg.split()[1])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 8-step run: ``(workdir, summary, records)``."""
    work = tmp_path_factory.mktemp("reference")
    summary = train_and_evaluate(cfg(), work)
    return work, summary, read_metrics(work / "metrics.jsonl")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """The same run, Ctrl-C during the eval at step 6, then rerun with compiles logged.

    Returns ``(workdir, stopped summary, resumed summary, names of the compiles in the
    resumed session)``.
    """
    work = tmp_path_factory.mktemp("interrupted")
    evaluate, calls = loop_lib.evaluate, []

    def evaluate_then_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:                      # the eval at step 6 (3, 6, 8)
            signal.raise_signal(signal.SIGINT)
        return evaluate(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop_lib, "evaluate", evaluate_then_ctrl_c)
        try:
            stopped = train_and_evaluate(cfg(), work)
        except KeyboardInterrupt:       # not a clean stop: the first test below reports it
            stopped = None
    compiles = CompileLog()
    jax_logger = logging.getLogger("jax")
    jax_logger.addHandler(compiles)
    try:
        import jax

        with jax.log_compiles(True):
            resumed = train_and_evaluate(cfg(), work)
    finally:
        jax_logger.removeHandler(compiles)
    return work, stopped, resumed, compiles.names


def test_ctrl_c_saves_a_checkpoint_and_stops_as_preempted_and_the_rerun_ends_identical(
        reference, interrupted):
    _, ref, ref_records = reference
    work, stopped, resumed, _ = interrupted
    assert stopped["status"] == "preempted" and stopped["step"] == 6
    assert 6 in [int(p.name) for p in Checkpointer.directory_in(work).iterdir() if p.name.isdigit()]
    assert resumed["status"] == "completed" and resumed["step"] == 8
    assert resumed["params_sha256"] == ref["params_sha256"]
    assert resumed["final"] == ref["final"]
    # The open logging interval (steps 5-8) survives the interruption at step 6.
    assert without_speed(read_metrics(work / "metrics.jsonl")) == without_speed(ref_records)


def test_a_resumed_session_compiles_the_train_step_once(interrupted):
    *_, compiled = interrupted
    assert len([n for n in compiled if "train_step" in n]) == 1, compiled


def test_train_loss_records_average_equal_log_intervals(reference, tmp_path):
    _, _, records = reference
    train_and_evaluate(cfg(log_every=1), tmp_path)
    per_step = read_metrics(tmp_path / "metrics.jsonl")
    losses = {r["step"]: r["train_loss"] for r in per_step}
    assert sorted(losses) == list(range(1, 9))
    logged = {r["step"]: r["train_loss"] for r in records if "train_loss" in r}
    assert logged == {4: pytest.approx(np.mean([losses[s] for s in (1, 2, 3, 4)]), rel=1e-12),
                      8: pytest.approx(np.mean([losses[s] for s in (5, 6, 7, 8)]), rel=1e-12)}
    # Eval points that are not log points get eval numbers only.
    assert [r["step"] for r in records if "eval_accuracy" in r] == [3, 6, 8]
    assert all("train_loss" not in r for r in records if r["step"] in (3, 6))


def test_compile_time_survives_re_reporting_a_finished_run(reference):
    work, ref, _ = reference
    assert ref["compile_time_s"] > 0
    again = train_and_evaluate(cfg(), work)              # nothing left to train: re-reports
    assert again["compile_time_s"] == ref["compile_time_s"]
    assert again["examples_per_sec"] == ref["examples_per_sec"]


def test_wall_time_counts_the_set_up_before_the_first_step(tmp_path, monkeypatch):
    load, summary_call, pause = build_lib.load_dataset, {}, 2.0

    def slow_load(*args, **kwargs):                     # stands for a slow dataset read
        time.sleep(pause)
        return load(*args, **kwargs)

    def summary(*args, **kwargs):
        summary_call.update(at=time.time(), wall=kwargs["wall_time_s"])
        return make_summary(*args, **kwargs)

    make_summary = report_lib.summarise
    monkeypatch.setattr(build_lib, "load_dataset", slow_load)
    monkeypatch.setattr(report_lib, "summarise", summary)
    start = time.time()
    train_and_evaluate(cfg(steps=1, log_every=1), tmp_path)
    elapsed = summary_call["at"] - start
    assert elapsed - 0.5 < summary_call["wall"] <= elapsed


def test_the_nan_advice_works_a_finished_run_extends_and_the_model_stays_fixed(tmp_path, caplog):
    # Warmup: step 1 trains at learning rate 0, step 2 at 5e29, whose update makes step 3's
    # loss NaN; step 2's checkpoint holds those parameters and is set aside.
    diverging = cfg(steps=6, learning_rate=1e30, checkpoint_every_steps=1)
    with pytest.raises(NonFiniteLossError, match=r"at step 3.*\(step 1\).*learning_rate"):
        train_and_evaluate(diverging, tmp_path)
    # The advice: lower the learning rate and rerun; it resumes from step 1.
    with caplog.at_level(logging.INFO, logger="absl"):
        fixed = train_and_evaluate(cfg(steps=6, checkpoint_every_steps=1), tmp_path)
    assert fixed["status"] == "completed" and fixed["step"] == 6
    assert "resumed from the checkpoint at step 1" in caplog.text
    assert "config.train.learning_rate changed: 1e+30 -> 0.001" in caplog.text
    longer = train_and_evaluate(cfg(steps=8, checkpoint_every_steps=1), tmp_path)
    assert longer["step"] == 8 and longer["total_steps"] == 8
    other_model = cfg(steps=8, checkpoint_every_steps=1)
    other_model.model.alpha = 0.5
    with pytest.raises(ConfigError, match=r"\['model.alpha'\] differ"):
        train_and_evaluate(other_model, tmp_path)
    other_seed = cfg(steps=8, checkpoint_every_steps=1)
    other_seed.seed = 1
    with pytest.raises(ConfigError, match=r"\['seed'\] differ"):
        train_and_evaluate(other_seed, tmp_path)


def test_a_nan_from_a_model_setting_is_not_blamed_on_the_learning_rate(tmp_path):
    huge_alpha = cfg(steps=1, log_every=1)
    huge_alpha.model.alpha = 1e9
    with pytest.raises(NonFiniteLossError) as err:
        train_and_evaluate(huge_alpha, tmp_path)
    message = str(err.value)
    assert "step 1" in message and "alpha=1000000000.0" in message
    assert "lower train.learning_rate" not in message
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and math.isfinite(summary["wall_time_s"])
