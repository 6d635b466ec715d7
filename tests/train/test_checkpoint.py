import grain
import jax.numpy as jnp
import numpy as np
from flax import nnx

from astroflax.train import Checkpointer


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
