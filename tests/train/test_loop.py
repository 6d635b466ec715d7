"""End-to-end smoke runs of train_and_evaluate (in process, tiny presets, a few steps)."""

import json
import math
import shutil

import pytest
import tensorflow_datasets as tfds

from astroflax.train import ConfigError, NonFiniteLossError, train_and_evaluate
from astroflax.train.checkpoint import Checkpointer
from astroflax.train.metrics import epochs_to_target, read_metrics
from experiments.configs import common
from tests.data.test_text_and_wikitext import write_release


def smoke(name, task=None):
    """The smoke config on one device: the suite's 8 CPU devices on 2 cores make SPMD runs
    slow, and one test below keeps data parallelism on to cover it."""
    if task is None:
        cfg = common.digits_config(name.split("_", 1)[1], name, "smoke")
    else:
        cfg = common.paper_config(task, name.split("_", 1)[1], name, "smoke")
    cfg.train.data_parallel = False
    return cfg


def check_reports(workdir, task):
    records = read_metrics(workdir / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 7))      # log_every_steps = 1
    for r in records:
        for k, v in r.items():
            assert isinstance(v, int | float) and math.isfinite(v), (k, v)
    key = "eval_perplexity" if task == "lm" else "eval_accuracy"
    assert [r["step"] for r in records if key in r] == [3, 6]     # eval_every_steps = 3
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 6
    assert summary["final"][key] == records[-1][key]
    assert summary["num_params"] > 0 and summary["wall_time_s"] > 0
    assert summary["examples_per_sec"] > 0
    assert json.loads((workdir / "config.json").read_text())["train"]["num_train_steps"] == 6
    assert (workdir / "curves.png").stat().st_size > 1000
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    return summary, records


def test_digits_smoke_writes_every_report(tmp_path):
    cfg = common.digits_config("astro", "digits_astro", "smoke")   # 8-way data parallel
    summary = train_and_evaluate(cfg, tmp_path)
    assert summary["num_devices"] == 8
    _, records = check_reports(tmp_path, "classification")
    assert summary["epochs_to_target"] == epochs_to_target(records, 0.85)
    assert 0 <= summary["final"]["eval_accuracy"] <= 1


def test_cifar10_and_imdb_smoke_on_tfds_mock_data(tmp_path):
    for name, task in (("cifar_softmax", "cifar10"), ("imdb_astro", "imdb")):
        cfg = smoke(name, task)
        with tfds.testing.mock_data(num_examples=80):
            train_and_evaluate(cfg, tmp_path / name)
        check_reports(tmp_path / name, "classification")


def test_wikitext2_smoke_on_generated_raw_files_reports_the_word_fallback(tmp_path):
    (tmp_path / "data").mkdir()
    write_release(tmp_path / "data", as_zip=True)
    cfg = smoke("wikitext2_astro", "wikitext2")
    cfg.data.data_dir = str(tmp_path / "data")
    cfg.data.max_len = 4                          # the generated corpus is ~30 tokens
    cfg.train.batch_size = 4                      # ... so 5 training windows
    summary = train_and_evaluate(cfg, tmp_path / "run")
    s, _ = check_reports(tmp_path / "run", "lm")
    assert summary["tokenizer"] == s["tokenizer"] == "word"
    assert summary["final"]["eval_perplexity"] == pytest.approx(
        math.exp(summary["final"]["eval_loss"]))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = smoke("digits_softmax")
    cfg.train.learning_rate = 1e30               # one AdamW step of 1e30 overflows the logits
    cfg.train.warmup_steps = 2                   # step 1: learning rate 0, so still good
    cfg.train.checkpoint_every_steps = 1
    cfg.train.schedule = "constant"
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss.*\(step 1\) is kept"):
        train_and_evaluate(cfg, tmp_path)
    # Step 3's loss is NaN: the parameters saved at step 2 gave it, so that checkpoint is set
    # aside and a rerun resumes from step 1.
    ckpts = Checkpointer.directory_in(tmp_path)
    assert sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) == [1]
    assert (Checkpointer.aside_of(ckpts, "diverged") / "2").is_dir()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged"


def test_rerun_of_a_finished_run_of_another_config_and_after_an_unreadable_checkpoint(tmp_path):
    cfg = smoke("digits_astro")
    ref = train_and_evaluate(cfg, tmp_path / "ref")
    again = train_and_evaluate(cfg, tmp_path / "ref")      # finished: resumes, reports the same
    assert again["final"] == ref["final"] and again["step"] == 6
    assert again["params_sha256"] == ref["params_sha256"]
    assert len(read_metrics(tmp_path / "ref" / "metrics.jsonl")) == 6   # nothing logged twice
    other = smoke("digits_astro")
    other.train.weight_decay = 0.5              # a resume may change the schedule, not this
    with pytest.raises(ConfigError, match=r"different config .*train\.weight_decay"):
        train_and_evaluate(other, tmp_path / "ref")             # refused before any work
    work = tmp_path / "work"
    shutil.copytree(tmp_path / "ref", work)
    # Step 6 is the latest; wreck its parameter files so restoring it fails.
    for f in (Checkpointer.directory_in(work) / "6" / "model").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    resumed = train_and_evaluate(cfg, work)                 # warns, resumes from step 3
    assert resumed["final"] == ref["final"]
    assert resumed["params_sha256"] == ref["params_sha256"]
    assert (Checkpointer.aside_of(Checkpointer.directory_in(work), "unreadable") / "6").is_dir()
    rec = read_metrics(work / "metrics.jsonl")
    assert [r["step"] for r in rec] == list(range(1, 7))          # steps 4-6 were redone
    assert [r["train_loss"] for r in rec] == [
        r["train_loss"] for r in read_metrics(tmp_path / "ref" / "metrics.jsonl")]


def test_a_process_without_the_metrics_file_resumes_a_finished_run_without_evaluating(tmp_path):
    # Only process 0 writes metrics.jsonl; another host (no shared disk) sees none. Whether the
    # last step was evaluated must come from the checkpoint, or processes would disagree on
    # entering the (collective) evaluation.
    train_and_evaluate(smoke("digits_softmax"), tmp_path)
    (tmp_path / "metrics.jsonl").unlink()
    summary = train_and_evaluate(smoke("digits_softmax"), tmp_path)
    assert summary["step"] == 6
    assert read_metrics(tmp_path / "metrics.jsonl") == []       # nothing evaluated again


def test_epochs_to_target_is_the_first_evaluated_epoch_at_or_above_it():
    records = [{"step": 1, "epoch": 0.5, "train_loss": 1.0},          # no eval: skipped
               {"step": 2, "epoch": 1.0, "eval_accuracy": 0.80},
               {"step": 4, "epoch": 2.0, "eval_accuracy": 0.85},      # reached exactly
               {"step": 6, "epoch": 3.0, "eval_accuracy": 0.95}]
    assert epochs_to_target(records, 0.85) == 2.0
    assert epochs_to_target(records, 0.90) == 3.0
    assert epochs_to_target(records, 0.99) is None
