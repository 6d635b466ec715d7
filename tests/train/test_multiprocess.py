"""Two JAX processes on localhost (``jax.distributed`` over the CPU collectives) run the real
command, ``python -m experiments.run``, and train exactly as one process with the same devices;
each reads only its rows of every global batch and writes its own iterator state."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from astroflax.train.checkpoint import Checkpointer
from tests.helpers import REPO, train_losses

# A 1-layer width-16 ViT on 64 digits (dropout on), FSDP over every device, 5 steps.
CONFIG = '''
from experiments.configs import common


def get_config():
    c = common.smoke(common.digits_config("softmax", "digits_softmax"))
    c.model.features, c.model.num_heads, c.model.mlp_dim, c.model.num_layers = 16, 2, 32, 1
    c.train.num_train_steps, c.train.eval_every_steps, c.train.checkpoint_every_steps = 5, 5, 5
    return common.fsdp(c)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(config: Path, workdir: Path, devices_per_process: int, extra: list[str]
            ) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONHASHSEED": "0",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.run", f"--config={config}", f"--workdir={workdir}",
         *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a process of the run hung for 300 s")
        assert p.returncode == 0, out[-4000:]
        outs.append(out)
    return outs


def test_two_processes_train_like_one_process_with_the_same_devices(tmp_path):
    config = tmp_path / "tiny_fsdp.py"
    config.write_text(CONFIG)
    port = _free_port()
    two = [_launch(config, tmp_path / "two", 2,
                   [f"--coordinator_address=localhost:{port}", "--num_processes=2",
                    f"--process_id={i}"]) for i in range(2)]
    one = [_launch(config, tmp_path / "one", 4, [])]
    _finish(two + one)

    ref, got = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert len(ref) == 5 and np.isfinite(ref).all()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s1["num_devices"] == s2["num_devices"] == 4
    assert s2["final"]["eval_accuracy"] == pytest.approx(s1["final"]["eval_accuracy"], abs=1e-6)
    # Every process saved its own grain iterator position.
    saved = Checkpointer.directory_in(tmp_path / "two") / "5" / "data_iter"
    files = sorted(saved.glob("process_*"))
    assert [p.name for p in files] == ["process_0-of-2.json", "process_1-of-2.json"]
    # Both count global batches, so either resumes a run on any number of processes.
    assert [json.loads(p.read_text()) for p in files] == [{"next_index": 5}] * 2
    # Fingerprints were computed, also of parameters spread over both processes (a gather;
    # the runs agree to 1e-5, not bitwise, so the digests are not compared).
    assert len(s2["params_sha256"]) == 64 and len(s1["params_sha256"]) == 64
