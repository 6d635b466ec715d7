"""Training: ``train_and_evaluate(config, workdir)``, its steps, checkpoints and reports."""

from astroflax.train.checkpoint import Checkpointer
from astroflax.train.config import ConfigError, model_overrides, validate_config
from astroflax.train.divergence import NonFiniteLossError
from astroflax.train.load import load_model
from astroflax.train.loop import train_and_evaluate
from astroflax.train.preemption import EXIT_PREEMPTED
from astroflax.train.record import RESUMABLE_FIELDS
from astroflax.train.steps import (
    TrainState,
    create_train_state,
    eval_step,
    make_optimizer,
    make_schedule,
    make_train_step,
)

__all__ = [
    "EXIT_PREEMPTED",
    "RESUMABLE_FIELDS",
    "Checkpointer",
    "ConfigError",
    "NonFiniteLossError",
    "TrainState",
    "create_train_state",
    "eval_step",
    "load_model",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "model_overrides",
    "train_and_evaluate",
    "validate_config",
]
