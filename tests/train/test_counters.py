"""The run's counters: a logging interval's mean loss, the first non-finite step, and a resume
from a checkpoint's metadata that continues every counter."""

import math

import jax.numpy as jnp
import pytest

from astroflax.train.counters import RunCounters


def step(c, loss, grad_norm=1.0, batch_size=4):
    c.count_step({"loss": jnp.float32(loss), "grad_norm": jnp.float32(grad_norm)}, batch_size)


def test_a_logging_interval_reports_the_mean_of_its_step_losses_across_syncs():
    c = RunCounters()
    for loss in (1.0, 2.0):
        step(c, loss)
    assert c.sync() is None                      # an eval point inside the interval
    step(c, 6.0, grad_norm=0.25)
    assert c.sync() is None
    assert (c.step, c.trained_examples, c.last_grad_norm) == (3, 12, 0.25)
    assert c.close_interval() == pytest.approx(3.0)   # (1 + 2 + 6) / 3
    step(c, 5.0)
    c.sync()
    assert c.close_interval() == 5.0             # the next interval starts empty


def test_sync_names_the_first_non_finite_step_and_metric():
    c = RunCounters()
    step(c, 1.0)
    step(c, 1.0, grad_norm=math.inf)
    step(c, math.nan)
    assert c.sync() == (2, "grad_norm")


def test_a_resume_from_the_metadata_continues_every_counter():
    c = RunCounters(session_start=0.0)
    for loss in (1.0, 3.0):
        step(c, loss)
    c.sync()
    c.compile_time_s, c.last_eval_step = 1.5, 1
    meta = c.meta()
    again = RunCounters.resume(meta, eval_steps=[], session_start=100.0)
    timeless = {k: v for k, v in again.meta().items() if k != "wall_time_s"}
    assert timeless == {k: v for k, v in meta.items() if k != "wall_time_s"}
    assert again.wall_before_s == meta["wall_time_s"] and again.session_start == 100.0
    assert again.close_interval() == 2.0         # the open interval survived
    # Metadata from before last_eval_step: the eval records say it.
    assert RunCounters.resume({"step": 4}, eval_steps=[2, 4], session_start=0).last_eval_step == 4
    assert RunCounters.resume({}, eval_steps=[], session_start=0).step == 0
