"""The NaN stop's advice: the initial parameters blame the model or data, not the learning rate;
otherwise lower the learning rate and rerun, which resumes from the last good checkpoint."""

from pathlib import Path

import ml_collections
import optax

from astroflax.train.divergence import NonFiniteLossError, diverged

MODEL = ml_collections.ConfigDict({"attention": "astro", "alpha": 1e9})
WARMUP = optax.linear_schedule(0.0, 1.0, 2)      # steps 0, 1, 2: rates 0, 0.5, 1


def error(bad_step, *, start_step=0, schedule=WARMUP, good_steps=(), name="loss"):
    e = diverged(bad_step, name, start_step=start_step, schedule=schedule, model_cfg=MODEL,
                 good_steps=list(good_steps), directory=Path("/w/checkpoints"))
    assert isinstance(e, NonFiniteLossError)
    return str(e)


def test_a_nan_before_any_update_blames_a_model_setting_not_the_learning_rate():
    # Step 2 used the parameters after step 1, which trained at rate 0: never changed.
    msg = error(2)
    assert msg.startswith("non-finite training loss at step 2, computed with the initial")
    assert "alpha=1000000000.0" in msg and "the same workdir starts over" in msg
    assert "another --workdir (/w/checkpoints holds" in error(2, good_steps=[1])


def test_a_nan_after_an_update_advises_a_lower_learning_rate_and_a_resume():
    msg = error(3, good_steps=[1], name="grad_norm")   # step 2 trained at 0.5
    assert msg.startswith("non-finite gradient norm at step 3; stopping")
    assert "(step 1) is kept in /w/checkpoints; lower train.learning_rate" in msg
    assert msg.endswith("it resumes from there.")
    assert "(none yet)" in error(3) and error(3).endswith("it starts over.")
    # A resumed session's parameters were trained before, whatever this session's rates.
    assert "lower train.learning_rate" in error(2, start_step=5, good_steps=[5])
