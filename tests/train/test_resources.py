"""The trainer releases what it holds on every path: a failure in set-up frees the workdir."""

import fcntl
import os

import pytest

from astroflax.data import DataNotFoundError
from astroflax.train import build, loop
from astroflax.train.workdir import LOCK_NAME, WorkdirError, lock_workdir
from experiments.configs import common


def test_a_data_error_after_the_lock_is_taken_leaves_the_workdir_free(tmp_path, monkeypatch):
    def missing(cfg):
        raise DataNotFoundError("the test's dataset is not on disk")

    monkeypatch.setattr(build, "load_dataset", missing)
    cfg = common.digits_config("astro", "digits_astro", "smoke")
    cfg.train.data_parallel = False
    with pytest.raises(DataNotFoundError, match="not on disk"):
        loop.train_and_evaluate(cfg, tmp_path)
    # flock locks belong to an open file: a lock the failed run leaked would refuse this.
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    with pytest.raises(DataNotFoundError):       # and a second run starts (and fails alike)
        loop.train_and_evaluate(cfg, tmp_path)


def test_a_live_lock_refuses_a_second_run_of_the_same_workdir(tmp_path):
    cfg = common.digits_config("astro", "digits_astro", "smoke")
    with lock_workdir(tmp_path), pytest.raises(WorkdirError, match="in use by another run"):
        loop.train_and_evaluate(cfg, tmp_path)
