"""Config errors caught before any compile: batch vs training set, max_len where it means
nothing or is longer than the token stream."""

import re
from types import SimpleNamespace

import pytest

from astroflax.data import DataConfigError, load_dataset
from astroflax.train import ConfigError, train_and_evaluate, validate_config
from astroflax.train.checkpoint import Checkpointer
from astroflax.train.config import validate_against_data
from experiments.configs import common
from tests.data.test_text_and_wikitext import write_release


def test_a_batch_larger_than_the_training_set_is_refused_before_training(tmp_path):
    cfg = common.digits_config("astro", "digits_astro", "smoke")     # 64 training examples
    cfg.train.data_parallel = False
    cfg.train.batch_size = 65
    with pytest.raises(ConfigError, match=r"config\.train\.batch_size: expected at most the 64 "
                                          r"training examples of digits"):
        train_and_evaluate(cfg, tmp_path)
    assert not Checkpointer.directory_in(tmp_path).exists()   # refused before the loop
    validate_against_data({"train": {"batch_size": 64}},              # equal: accepted
                          SimpleNamespace(num_train=64, name="digits"))


@pytest.mark.parametrize("dataset", ["digits", "cifar10"])
def test_max_len_on_an_image_dataset_is_refused(dataset):
    cfg = (common.digits_config("astro", "digits_astro", "smoke") if dataset == "digits"
           else common.paper_config("cifar10", "astro", "cifar_astro", "smoke"))
    cfg.data.max_len = 128
    with pytest.raises(ConfigError, match=rf"config\.data\.max_len: expected unset for {dataset}"):
        validate_config(cfg, num_devices=1, process_count=1)


def test_a_wikitext_max_len_longer_than_the_token_stream_names_the_field(tmp_path):
    write_release(tmp_path, as_zip=True)
    data = {"name": "wikitext2", "data_dir": str(tmp_path), "tokenizer": "word",
            "max_len": 2000}
    # The data layer names the field under data.*; the trainer prefixes it with config.
    with pytest.raises(DataConfigError, match=r"^data\.max_len: expected at most (\d+) "
                                              r"\(the shorter WikiText-2 split in use has \d+ "
                                              r"tokens\), got 2000") as e:
        load_dataset(data)
    limit = int(re.search(r"at most (\d+)", str(e.value)).group(1))
    # The bound is exact: windows of `limit` tokens (limit + 1 with the shifted target) fit.
    assert load_dataset({**data, "max_len": limit}).num_eval == 1
    with pytest.raises(DataConfigError):
        load_dataset({**data, "max_len": limit + 1})
