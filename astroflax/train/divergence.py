"""A run that diverged: the error it stops with, and the advice in it.

When a step's loss or gradient norm is NaN or Inf, the trainer sets aside the checkpoints
whose parameters gave it (:meth:`astroflax.train.checkpoint.Checkpointer.set_aside_diverged`)
and raises :func:`diverged`'s error, whose advice a rerun of the same workdir can follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optax


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the last good checkpoint is kept."""


def diverged(bad_step: int, name: str, *, start_step: int, schedule: optax.Schedule,
             model_cfg: Any, good_steps: list[int], directory: Path) -> NonFiniteLossError:
    """The error for a non-finite ``name`` (``"loss"`` or ``"grad_norm"``) at ``bad_step``.

    A non-finite value before the parameters were ever changed (a fresh run, ``start_step ==
    0``, whose ``schedule`` gave only zero learning rates before ``bad_step``) comes from the
    model or the data, not the learning rate, and the message says so.

    Args:
      bad_step: the step whose ``name`` was not finite.
      name: ``"loss"`` or ``"grad_norm"``.
      start_step: the step this session resumed from (0: a fresh run).
      schedule: the learning-rate schedule (step -> rate).
      model_cfg: ``config.model``, named in the message.
      good_steps: the checkpoints left after the diverged ones were set aside, ascending.
      directory: the checkpoints' folder.
    """
    what = "training loss" if name == "loss" else "gradient norm"
    untouched = start_step == 0 and all(
        float(schedule(i)) == 0.0 for i in range(bad_step - 1))
    if untouched:
        m = model_cfg
        return NonFiniteLossError(
            f"non-finite {what} at step {bad_step}, computed with the initial parameters "
            "(no update had changed them yet), so the learning rate is not the cause: a "
            f"model setting is out of range (config.model: attention={m.attention!r}, "
            f"alpha={m.get('alpha')!r}, ...; e.g. a huge alpha) or the data holds "
            "non-finite values. Fix that setting and rerun"
            + (f" with another --workdir ({directory} holds checkpoints of this model)."
               if good_steps else "; nothing was saved, so the same workdir starts over."))
    return NonFiniteLossError(
        f"non-finite {what} at step {bad_step}; stopping. The last good checkpoint "
        f"({'step ' + str(good_steps[-1]) if good_steps else 'none yet'}) is kept in "
        f"{directory}; lower train.learning_rate (or lengthen train.warmup_steps) and rerun "
        "the same command with that change: it "
        f"{'resumes from there' if good_steps else 'starts over'}.")
