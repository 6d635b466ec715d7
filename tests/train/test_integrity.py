"""Checkpoint integrity: restore verifies the saved fingerprint and finiteness, falls back to the
previous checkpoint, and starting over keeps the old history; one run per workdir."""

import json
import os
import subprocess
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroflax.train.checkpoint import (
    Checkpointer,
    CorruptCheckpointError,
    tree_fingerprint,
    verify_restored,
)
from astroflax.train.workdir import LOCK_NAME, WorkdirError, lock_workdir
from tests.helpers import REPO


class Wide(nnx.Module):
    def __init__(self):
        # 64 KiB of float32, so bytes damaged in the middle of the data file hit values.
        self.w = nnx.Param(jnp.zeros((16384,), jnp.float32))


#: Incompressible values (the data files are compressed): value v is stored as v + NOISE.
NOISE = np.random.default_rng(0).uniform(0, 0.5, 16384).astype(np.float32)


def _state(value):
    m = Wide()
    m.w[...] = jnp.asarray(value + NOISE, jnp.float32)
    return nnx.State({"model": nnx.state(m), "optimizer": nnx.state(Wide())})


def _save_steps(directory, values):
    it = iter(grain.MapDataset.range(100).to_iter_dataset())
    ckpt = Checkpointer(directory, keep=5)
    for step, value in values.items():
        next(it)
        ckpt.save(step, _state(value), it, {"step": step})
        ckpt.wait()
    ckpt.close()


def _restore(directory, **kw):
    fresh = iter(grain.MapDataset.range(100).to_iter_dataset())
    out = Checkpointer(directory, keep=5).restore_latest(_state(0.0), fresh, **kw)
    return out, fresh


def _damage_model_files(step_dir):
    """64 bytes overwritten mid-way in every parameter data file (sizes unchanged).

    Every file, not only the largest: a file may hold bytes the checkpoint no longer refers to
    (orbax's OCDBT layout), and damage there is rightly harmless.
    """
    for f in (step_dir / "model").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            data = bytearray(f.read_bytes())
            mid = len(data) // 2
            data[mid:mid + 64] = b"\xff" * 64            # 0xffffffff is a NaN as float32
            f.write_bytes(bytes(data))


def test_fingerprint_is_the_sha256_of_path_and_bytes_and_sees_one_flipped_bit():
    import hashlib

    tree = {"a": np.arange(3, dtype=np.float32), "b": np.ones((2,), np.int32)}
    h = hashlib.sha256()
    for name in ("a", "b"):                       # the hand-built reference: path, then bytes
        h.update(f"['{name}']".encode())
        h.update(tree[name].tobytes())
    assert tree_fingerprint(tree) == h.hexdigest()
    flipped = {"a": tree["a"].copy(), "b": tree["b"]}
    flipped["a"].view(np.uint32)[1] ^= 1          # one bit of one value
    assert tree_fingerprint(flipped) != h.hexdigest()
    # Typed PRNG keys (dropout RNG state) hash through their key data.
    key = jax.random.key(3)
    assert tree_fingerprint({"k": key}) != tree_fingerprint({"k": jax.random.key(4)})


def test_damaged_bytes_are_detected_and_the_previous_checkpoint_is_restored(tmp_path):
    _save_steps(tmp_path, {1: 1.0, 2: 2.0})
    _damage_model_files(tmp_path / "2")
    (state, meta), fresh = _restore(tmp_path)
    assert meta["step"] == 1
    np.testing.assert_array_equal(np.asarray(state.model["w"][...]), 1.0 + NOISE)
    assert next(fresh) == 1                       # the iterator of step 1, not of step 2
    assert (Checkpointer.aside_of(tmp_path, "unreadable") / "2").is_dir()


def test_a_non_finite_saved_state_is_refused_even_with_a_matching_fingerprint(tmp_path):
    _save_steps(tmp_path, {1: 1.0, 2: float("nan")})
    (state, meta), _ = _restore(tmp_path)
    assert meta["step"] == 1
    assert np.isfinite(np.asarray(state.model["w"][...])).all()


def test_when_no_checkpoint_is_usable_it_says_so_and_moves_the_history_aside(tmp_path, caplog):
    ckpts, workdir = Checkpointer.directory_in(tmp_path), tmp_path
    _save_steps(ckpts, {1: 1.0, 2: 2.0})
    for step in (1, 2):
        _damage_model_files(ckpts / str(step))
    history = workdir / "metrics.jsonl"
    history.write_text('{"step": 1, "epoch": 0.1, "train_loss": 2.0}\n')
    (workdir / "tensorboard").mkdir()
    with caplog.at_level("WARNING", logger="absl"):
        out, _ = _restore(ckpts, history=[history, workdir / "tensorboard"])
    assert out is None
    assert not history.exists() and not (workdir / "tensorboard").exists()
    aside = Checkpointer.aside_of(ckpts, "unreadable")
    kept = list(aside.glob("history-*/metrics.jsonl"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["train_loss"] == 2.0
    assert sorted(p.name for p in aside.iterdir() if p.name.isdigit()) == ["1", "2"]
    text = caplog.text
    assert "STARTING OVER FROM STEP 0" in text and "metrics.jsonl" in text
    assert "TensorStore details" not in text and "'driver'" not in text


def _hold_lock_in_another_process(workdir):
    # Another process: flock is per open file, and this process may re-take its own lock.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from astroflax.train.workdir import "
         "lock_workdir; lock_workdir(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
         str(workdir)], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_lock_on_a_busy_workdir_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    holder = _hold_lock_in_another_process(tmp_path)
    try:
        with pytest.raises(WorkdirError, match=rf"in use by another run \(pid {holder.pid} "):
            lock_workdir(tmp_path)
    finally:
        holder.kill()                             # dies holding it, as a SIGKILLed run does
        holder.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["active"] is True
    lock = lock_workdir(tmp_path)                 # stale: taken over
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == {"active": False}


def test_a_workdir_that_is_a_file_is_refused_with_the_reason(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(WorkdirError, match="is a file, not a directory"):
        lock_workdir(tmp_path / "f")
    with pytest.raises(WorkdirError, match="is a file, not a directory"):
        lock_workdir(tmp_path / "f" / "sub")


def test_a_read_only_workdir_is_refused_with_the_reason(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(WorkdirError, match="not writable"):
            lock_workdir(ro)
        with pytest.raises(WorkdirError, match="cannot be created"):
            lock_workdir(ro / "run")
    finally:
        ro.chmod(0o700)


def test_a_run_on_a_busy_workdir_is_refused_before_it_writes_anything(tmp_path):
    from astroflax.train import train_and_evaluate
    from experiments.configs import common

    holder = _hold_lock_in_another_process(tmp_path)
    try:
        cfg = common.digits_config("astro", "digits_astro", "smoke")
        with pytest.raises(WorkdirError, match="in use by another run"):
            train_and_evaluate(cfg, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]   # no config.json, ...



def test_verify_restored_accepts_the_saved_tree_and_refuses_other_bytes_or_nan():
    tree = {"w": jnp.arange(4.0), "b": {"c": jnp.ones((2, 2), jnp.float32)}}
    verify_restored(tree, tree_fingerprint(tree))
    verify_restored(tree, None)                              # pre-fingerprint checkpoint
    flipped = {**tree, "w": tree["w"].at[3].set(3.0000000000000004)}   # one ulp
    with pytest.raises(CorruptCheckpointError, match="does not match the fingerprint"):
        verify_restored(flipped, tree_fingerprint(tree))
    nan = {**tree, "w": tree["w"].at[0].set(jnp.nan)}
    with pytest.raises(CorruptCheckpointError, match=r"non-finite values in \['w'\]"):
        verify_restored(nan, None)


def test_the_best_checkpoint_survives_a_resume_and_later_saves(tmp_path):
    # keep=1: only the latest and the best-scored checkpoint are kept. A second Checkpointer
    # on the same directory (a resumed process) must still know step 1 was best.
    it = iter(grain.MapDataset.range(100).to_iter_dataset())

    def session(scores):
        ckpt = Checkpointer(tmp_path, keep=1)
        for step, score in scores.items():
            next(it)
            ckpt.save(step, _state(float(step)), it, {"step": step}, score=score)
            ckpt.wait()
        steps = ckpt.all_steps()
        ckpt.close()
        return steps

    assert session({1: 0.9, 2: 0.1, 3: 0.2}) == [1, 3]
    assert session({4: 0.3, 5: None}) == [1, 5]
    assert session({6: 0.95}) == [6]


def test_one_pass_fingerprints_equal_the_fingerprints_of_the_pair_and_of_the_model():
    from astroflax.train.checkpoint import _state_and_model_fingerprints

    model = {"w": jnp.arange(4.0), "b": {"c": jnp.ones((2, 2), jnp.float32)}}
    opt = {"mu": jnp.full((3,), 0.5), "count": jnp.array(7, jnp.int32)}
    assert _state_and_model_fingerprints(model, opt) == (tree_fingerprint((model, opt)),
                                                         tree_fingerprint(model))
