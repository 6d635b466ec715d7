"""The checkpointer: which checkpoints it keeps, what it restores, and where it puts the
checkpoints it sets aside (it owns the on-disk layout)."""

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroflax.train import Checkpointer
from astroflax.train.checkpoint import in_structure_of


class Tiny(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.zeros((3,), jnp.float32))


def test_keeps_the_last_k_and_the_best_scored_checkpoint_and_restores_the_newest(tmp_path):
    model = Tiny()
    opt_state = nnx.state(Tiny())
    it = iter(grain.MapDataset.range(100).to_iter_dataset())
    ckpt = Checkpointer(tmp_path, keep=2)
    scores = {1: 0.1, 2: 0.9, 3: 0.2, 4: None, 5: 0.4}
    for step, score in scores.items():
        model.w[...] = jnp.full((3,), step, jnp.float32)
        next(it)
        ckpt.save(step, nnx.State({"model": nnx.state(model), "optimizer": opt_state}), it,
                  {"step": step}, score=score)
        ckpt.wait()
    assert ckpt.all_steps() == [2, 4, 5]          # best (0.9 at step 2) + the last two
    ckpt.close()

    fresh = iter(grain.MapDataset.range(100).to_iter_dataset())
    state, meta = Checkpointer(tmp_path, keep=2).restore_latest(
        nnx.State({"model": nnx.state(Tiny()), "optimizer": opt_state}), fresh)
    assert meta["step"] == 5
    np.testing.assert_array_equal(np.asarray(state.model["w"][...]), [5, 5, 5])
    assert next(fresh) == 5                        # the iterator resumes after 5 elements


def test_the_layout_is_checkpoints_in_the_workdir_with_set_aside_folders_beside_it(tmp_path):
    directory = Checkpointer.directory_in(tmp_path)
    assert directory == tmp_path / "checkpoints"
    assert Checkpointer.aside_of(directory, "unreadable") == tmp_path / "checkpoints.unreadable"
    assert Checkpointer.aside_of(directory, "diverged") == tmp_path / "checkpoints.diverged"


def test_diverged_checkpoints_are_set_aside_and_replace_an_older_copy(tmp_path):
    it = iter(grain.MapDataset.range(100).to_iter_dataset())
    state = nnx.State({"model": nnx.state(Tiny()), "optimizer": nnx.state(Tiny())})
    directory = Checkpointer.directory_in(tmp_path)
    aside = Checkpointer.aside_of(directory, "diverged")
    (aside / "2").mkdir(parents=True)
    (aside / "2" / "stale").write_text("an earlier divergence")
    ckpt = Checkpointer(directory, keep=5)
    for step in (1, 2, 3):
        ckpt.save(step, state, it, {"step": step})   # pending: set_aside_diverged waits
    ckpt.set_aside_diverged(2)
    assert ckpt.all_steps() == [1]
    assert sorted(p.name for p in aside.iterdir()) == ["2", "3"]
    assert not (aside / "2" / "stale").exists() and (aside / "2" / "model").is_dir()
    ckpt.set_aside_diverged(5)                    # nothing at or after step 5: nothing moves
    assert ckpt.all_steps() == [1]
    ckpt.save(2, state, it, {"step": 2})          # the run may save step 2 again
    ckpt.close()
    assert sorted(p.name for p in directory.iterdir() if p.name.isdigit()) == ["1", "2"]


def test_a_restored_state_takes_the_structure_of_the_target_or_names_the_paths_that_differ():
    target = {"model": {"w": np.zeros(2)}, "optimizer": {}}
    restored = nnx.State({"model": nnx.State({"w": np.ones(2)}), "optimizer": nnx.State({})})
    out = in_structure_of(target, restored)
    assert jax.tree.structure(out) == jax.tree.structure(target)
    np.testing.assert_array_equal(out["model"]["w"], [1, 1])
    with pytest.raises(ValueError, match=r"paths differ from the model's: \[\"\['model'\]\['v'\]"):
        in_structure_of(target, {"model": {"v": np.ones(2)}, "optimizer": {}})
