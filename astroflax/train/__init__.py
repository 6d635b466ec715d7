"""Training: ``train_and_evaluate(config, workdir)``, its steps, checkpoints and reports."""

from astroflax.train.checkpoint import Checkpointer
from astroflax.train.config import ConfigError, model_overrides, validate_config
from astroflax.train.load import load_model
from astroflax.train.loop import NonFiniteLossError, train_and_evaluate
from astroflax.train.steps import eval_step, init_state, make_optimizer, make_schedule, train_step

__all__ = [
    "Checkpointer",
    "ConfigError",
    "NonFiniteLossError",
    "eval_step",
    "init_state",
    "load_model",
    "make_optimizer",
    "make_schedule",
    "model_overrides",
    "train_and_evaluate",
    "train_step",
    "validate_config",
]
