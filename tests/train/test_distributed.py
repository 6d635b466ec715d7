"""When ``jax.distributed`` starts: flags first, then environment, then ``distributed=True``
(a bare, auto-detecting initialize); ``python -m experiments.run`` also asks for it when the
config says ``distributed = True``. The real two-process run is tests/train/test_multiprocess.py."""

import os
import subprocess
import sys

import jax
import pytest

from astroflax.train import distributed
from tests.helpers import REPO

ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "ASTROFLAX_DISTRIBUTED")


@pytest.fixture
def calls(monkeypatch):
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    got = []
    monkeypatch.setattr(jax.distributed, "initialize",
                        lambda **kw: got.append(kw))
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    return got


def test_nothing_asked_means_a_single_process(calls):
    assert distributed.maybe_initialize() is False and calls == []


def test_flags_win_over_the_environment(calls, monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "envhost:1")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert distributed.maybe_initialize("flaghost:2", 2, 1)
    assert distributed.maybe_initialize()
    assert calls == [
        {"coordinator_address": "flaghost:2", "num_processes": 2, "process_id": 1},
        {"coordinator_address": "envhost:1", "num_processes": 4, "process_id": 3}]


def test_flags_and_environment_combine_per_field(calls, monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "localhost:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    assert distributed.maybe_initialize(process_id=1)
    assert calls == [{"coordinator_address": "localhost:1234", "num_processes": 2,
                      "process_id": 1}]


def test_distributed_alone_is_a_bare_auto_detecting_initialize(calls, monkeypatch):
    assert distributed.maybe_initialize(distributed=True)
    monkeypatch.setenv("ASTROFLAX_DISTRIBUTED", "1")
    assert distributed.maybe_initialize()
    assert calls == [{"coordinator_address": None, "num_processes": None,
                      "process_id": None}] * 2


def test_a_process_count_without_a_coordinator_is_refused(calls):
    with pytest.raises(ValueError, match="without a coordinator address"):
        distributed.maybe_initialize(num_processes=2, process_id=0)


def test_the_config_field_starts_jax_distributed_in_the_runner(tmp_path):
    # Off a cluster, the bare initialize finds no coordinator: jax's own error shows it ran.
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    out = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--config=digits_softmax:smoke",
         "--config.distributed=True", f"--workdir={tmp_path}"],
        cwd=REPO, env={**env, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
        timeout=300)
    assert out.returncode != 0
    assert "coordinator_address should be defined" in out.stderr
