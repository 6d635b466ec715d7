"""What a run is made of: its devices, data, schedule, model and train step (:func:`build_run`).

The part of a run's set-up that holds no resource (the workdir lock and the checkpointer are
the trainer's, :mod:`astroflax.train.loop`). In order: the devices and the batch sharding of
``config.mesh``, this process's rows of each batch, the dataset, the step counts and the
learning-rate schedule, the optimizer, the initial train state (with pretrained tables copied
in), the jitted train step and the data iterator. Config problems found on the way
raise :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import grain
import jax
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding

from astroflax.data import DataConfigError, Dataset, describe, load_dataset, train_iterator
from astroflax.train.config import (
    ConfigError,
    mesh_config,
    model_overrides,
    run_device_count,
    validate_against_data,
)
from astroflax.train.mesh import batch_sharding, make_mesh, process_rows, to_global
from astroflax.train.steps import (
    StepSharding,
    create_train_state,
    load_pretrained,
    make_optimizer,
    make_schedule,
    make_train_step,
    state_shardings,
)
from astroflax.train.tasks import Task, for_dataset


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """The fixed parts of one session of a run (the state and data iterator change: apart)."""

    devices: list[jax.Device]          # the run's devices (a prefix of jax.devices())
    data_sharding: NamedSharding       # batches: leading dimension over config.mesh.batch_axes
    batch_size: int                    # examples per global train batch
    eval_batch_size: int               # ... per global eval batch
    eval_rows: tuple[int, int]         # this process's rows [start, stop) of each eval batch
    ds: Dataset
    task: Task                         # what the batches hold, the loss, the eval metric
    total_steps: int
    eval_every: int                    # steps between evaluations
    schedule: optax.Schedule           # step -> learning rate
    graphdef: nnx.GraphDef             # of the TrainState (model and optimizer)
    num_params: int                    # the model's parameters (nnx.Param leaves' sizes)
    placement: StepSharding            # parameter placement inside the steps
    train_step: Any                    # jitted step(state, batch) -> (state, metrics)

    def epoch_of(self, step: int) -> float:
        """Epochs trained after ``step`` steps."""
        return step * self.batch_size / self.ds.num_train

    def put(self, batch: dict[str, np.ndarray], batch_size: int) -> dict[str, jax.Array]:
        """This process's rows of a global batch of ``batch_size`` as global sharded arrays."""
        return to_global(batch, self.data_sharding, batch_size)


def build_run(cfg: Any) -> tuple[RunSetup, nnx.State, grain.DatasetIterator]:
    """The set-up of a run of ``cfg`` (validated): ``(setup, initial train state, iterator)``.

    The state is fresh (step 0) and the iterator at the start; the trainer restores both from
    a checkpoint when there is one.

    Raises:
      ConfigError: a field the mesh, the data or the model rejects (``config.<field>: ...``).
      DataNotFoundError: the dataset is not prepared (the message says how).
    """
    t = cfg.train
    devices = jax.devices()[:run_device_count(cfg)]
    mesh_cfg = mesh_config(cfg)
    mesh = make_mesh(mesh_cfg, devices)
    data_sharding = batch_sharding(mesh, mesh_cfg)
    eval_bs = t.eval_batch_size or t.batch_size
    try:  # before any data is read: the rows of each global batch this process feeds
        train_rows = process_rows(data_sharding, t.batch_size)
        eval_rows = process_rows(data_sharding, eval_bs)
    except ValueError as e:
        raise ConfigError(f"config.mesh: {e}") from None

    try:
        ds = load_dataset(cfg.data.to_dict())
    except DataConfigError as e:
        raise ConfigError(f"config.{e}") from None
    validate_against_data(cfg, ds)
    logging.info("data: %s", describe(ds))
    model_kw = model_overrides(cfg.model, ds.model_overrides)
    steps_per_epoch = max(ds.num_train // t.batch_size, 1)
    total_steps = int(t.num_train_steps or math.ceil(t.num_epochs * steps_per_epoch))
    schedule = make_schedule(learning_rate=t.learning_rate, schedule=t.schedule,
                             warmup_steps=t.warmup_steps, total_steps=total_steps)
    tx = make_optimizer(schedule, weight_decay=t.weight_decay, b1=t.b1, b2=t.b2,
                        grad_clip_norm=t.grad_clip_norm)
    try:
        graphdef, state = create_train_state(
            cfg.model.name, model_kw, tx, cfg.seed, mesh=mesh, rules=tuple(mesh_cfg["rules"]))
    except ValueError as e:  # the model rejected a value the generic checks let through
        raise ConfigError(f"config.model: {e}") from None
    if ds.pretrained:   # read once by the data, copied in after init
        try:
            state = load_pretrained(graphdef, state, ds.pretrained)
        except ValueError as e:
            raise ConfigError(f"config.model: {e}") from None
    num_params = sum(int(x.size) for x in
                     jax.tree.leaves(nnx.filter_state(state.model, nnx.Param)))
    logging.info("model %s (attention=%s): %s parameters; %d steps (%d per epoch), batch %d "
                 "on %d device(s)", cfg.model.name, cfg.model.attention,
                 f"{num_params:,}", total_steps, steps_per_epoch, t.batch_size, len(devices))
    placement = StepSharding.gather_over(state, tuple(mesh_cfg["batch_axes"]))
    task = for_dataset(ds)
    train_step = make_train_step(graphdef, task=task, placement=placement,
                                 shardings=state_shardings(state))
    it = train_iterator(ds, t.batch_size, seed=cfg.seed,
                        augment=bool(cfg.data.get("augment")), rows=train_rows)
    setup = RunSetup(
        devices=devices, data_sharding=data_sharding, batch_size=t.batch_size,
        eval_batch_size=eval_bs, eval_rows=eval_rows, ds=ds, task=task,
        total_steps=total_steps, eval_every=t.eval_every_steps or steps_per_epoch,
        schedule=schedule, graphdef=graphdef, num_params=num_params, placement=placement,
        train_step=train_step)
    return setup, state, it
