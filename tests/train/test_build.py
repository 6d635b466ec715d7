"""What a run is built from: step counts from epochs, evaluation once an epoch by default, the
parameter count of the model, and a fresh iterator of global batches."""

import jax
import numpy as np
from flax import nnx

from astroflax.train.build import build_run
from experiments.configs import common


def test_a_run_of_epochs_counts_steps_and_evaluates_once_an_epoch_by_default():
    cfg = common.digits_config("astro", "digits_astro", "smoke")   # 64 examples, batch 16
    cfg.train.data_parallel = False
    cfg.train.num_train_steps, cfg.train.num_epochs = 0, 2.5
    cfg.train.eval_every_steps, cfg.train.eval_batch_size = 0, 8
    setup, state, it = build_run(cfg)
    assert setup.total_steps == 10 and setup.eval_every == 4      # ceil(2.5 * 4), 4 an epoch
    assert setup.epoch_of(6) == 1.5 and setup.eval_batch_size == 8
    assert len(setup.devices) == 1 and setup.eval_rows == (0, 8)
    params = jax.tree.leaves(nnx.filter_state(state.model, nnx.Param))
    assert setup.num_params == sum(p.size for p in params) > 0
    assert float(setup.schedule(0)) == 0.0                        # warmup starts at 0
    batch = setup.put(next(it), setup.batch_size)
    assert batch["label"].shape == (16,)
    assert np.isfinite(np.asarray(batch["inputs"])).all()
