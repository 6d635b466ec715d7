"""The summary from hand-made ``metrics.jsonl`` records: the final and the best eval (the first
of ties; lower perplexity wins for a language model), epochs to the target accuracy."""

import json
from types import SimpleNamespace

import ml_collections

from astroflax.train.report import summarise, write_reports


def cfg(target=0.75):
    return ml_collections.ConfigDict({"name": "digits_astro", "train": {"target_accuracy": target},
                                      "model": {"name": "vit", "attention": "astro"}})


def summary(ds, records, **kw):
    return summarise(cfg(), ds, records, status="completed", step=6, total_steps=6, epoch=3.0,
                     num_params=10, wall_time_s=1.234, examples_per_sec=5.0,
                     compile_time_s=0.5, devices=1, **kw)


DIGITS = SimpleNamespace(name="digits", task="classification", info={"eval_split": "test"})
RECORDS = [
    {"step": 1, "epoch": 0.5, "train_loss": 2.0},
    {"step": 2, "epoch": 1.0, "eval_loss": 0.5, "eval_accuracy": 0.8},
    {"step": 4, "epoch": 2.0, "eval_loss": 0.4, "eval_accuracy": 0.8},
    {"step": 6, "epoch": 3.0, "train_loss": 0.3, "eval_loss": 0.6, "eval_accuracy": 0.7},
]


def test_a_classification_summary_names_the_final_and_the_first_best_eval():
    s = summary(DIGITS, RECORDS)
    assert s["final"] == {"eval_loss": 0.6, "eval_accuracy": 0.7}
    assert s["best"] == {"step": 2, "epoch": 1.0, "eval_accuracy": 0.8}
    assert s["target_accuracy"] == 0.75 and s["epochs_to_target"] == 1.0
    assert (s["config"], s["model"], s["attention"]) == ("digits_astro", "vit", "astro")
    assert s["wall_time_s"] == 1.23 and s["eval_split"] == "test" and "tokenizer" not in s


def test_a_language_model_summary_takes_the_lowest_perplexity_and_has_no_target():
    text = SimpleNamespace(name="wikitext2", task="lm", info={"tokenizer": "word"})
    records = [{"step": 2, "epoch": 1.0, "eval_loss": 3.0, "eval_perplexity": 20.0},
               {"step": 4, "epoch": 2.0, "eval_loss": 2.0, "eval_perplexity": 7.4}]
    s = summary(text, records)
    assert s["best"] == {"step": 4, "epoch": 2.0, "eval_perplexity": 7.4}
    assert "target_accuracy" not in s and s["tokenizer"] == "word"
    assert summary(text, [])["final"] is None and summary(text, [])["best"] is None


def test_the_written_summary_is_the_returned_one(tmp_path):
    s = summary(DIGITS, RECORDS)
    write_reports(tmp_path, cfg(), s, RECORDS, eval_key="eval_accuracy")
    assert json.loads((tmp_path / "summary.json").read_text()) == s
