"""A run's record: ``config.json`` is the plain sorted JSON of the config, and a resume may
change only the fields of ``RESUMABLE_FIELDS`` (the others are refused, the changes logged)."""

import json
import logging

import ml_collections
import pytest

from astroflax.train import ConfigError
from astroflax.train.checkpoint import Checkpointer
from astroflax.train.record import RESUMABLE_FIELDS, check_resumable, config_json, record_config


def test_config_json_is_the_plain_sorted_json_of_the_config():
    cfg = ml_collections.ConfigDict({"train": {"lr": 0.5, "b": (1, 2)}, "a": None})
    out = config_json(cfg)
    assert out == {"a": None, "train": {"b": [1, 2], "lr": 0.5}}
    assert list(out) == ["a", "train"]


def config(**train):
    return ml_collections.ConfigDict({
        "seed": 0, "mesh": {"shape": [-1]},
        "train": {"learning_rate": 1e-3, "weight_decay": 0.0, **train}})


def with_checkpoint(workdir, cfg):
    """``workdir`` as a run of ``cfg`` left it: its record and a committed step folder."""
    record_config(workdir, cfg, write=True)
    (Checkpointer.directory_in(workdir) / "3").mkdir(parents=True)


def test_a_resume_may_change_the_resumable_fields_and_each_change_is_logged(tmp_path, caplog):
    assert "train.learning_rate" in RESUMABLE_FIELDS and "mesh.*" in RESUMABLE_FIELDS
    with_checkpoint(tmp_path, config())
    changed = config(learning_rate=0.5)
    changed.mesh.shape = [2, 4]                       # under mesh.*
    with caplog.at_level(logging.WARNING, logger="absl"):
        check_resumable(tmp_path, config_json(changed))
    assert "config.train.learning_rate changed: 0.001 -> 0.5" in caplog.text
    assert "config.mesh.shape changed: [-1] -> [2, 4]" in caplog.text


def test_a_resume_that_changes_another_field_is_refused_naming_it(tmp_path):
    with_checkpoint(tmp_path, config())
    other = config(weight_decay=0.5)
    other.seed = 1
    with pytest.raises(ConfigError, match=r"different config \(fields \['seed', "
                                          r"'train.weight_decay'\] differ"):
        check_resumable(tmp_path, config_json(other))


def test_without_a_committed_checkpoint_any_config_may_start_over(tmp_path):
    record_config(tmp_path, config(), write=True)
    Checkpointer.directory_in(tmp_path).mkdir()
    # Only step folders (digit names) count: an orbax temporary folder is no checkpoint.
    (Checkpointer.directory_in(tmp_path) / "3.orbax-checkpoint-tmp-1").mkdir()
    record_config(tmp_path, config(weight_decay=0.5), write=True)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["weight_decay"] == 0.5


def test_only_the_writing_process_writes_the_record(tmp_path):
    record_config(tmp_path, config(), write=False)
    assert not (tmp_path / "config.json").exists()
    record_config(tmp_path, config(), write=True)
    assert json.loads((tmp_path / "config.json").read_text()) == config_json(config())
