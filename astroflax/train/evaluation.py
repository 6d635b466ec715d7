"""The one evaluation: exact metrics of a model over a dataset's eval split.

Used by the trainer (every ``eval_every_steps``), ``experiments.evaluate`` and the studies, so
a checkpoint's metrics are the same numbers wherever they are computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from astroflax.data.base import Dataset
from astroflax.data.pipeline import eval_batches
from astroflax.train.steps import StepSharding, eval_step
from astroflax.train.tasks import Task, as_task


def summed_eval_metrics(batch_totals: Iterable[Mapping[str, jax.Array]], task: Task | str
                        ) -> dict[str, float]:
    """The eval metrics of per-batch sums ``{"nll", "correct", "count"}`` (scalars each).

    Returns what :meth:`astroflax.train.tasks.Task.summarise` gives: ``eval_loss`` (the summed
    NLL over the summed count) and ``eval_accuracy``, or for a language model
    ``eval_perplexity = exp(eval_loss)`` and ``eval_token_accuracy``.
    """
    totals: Mapping[str, jax.Array] | None = None
    for out in batch_totals:
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    return as_task(task).summarise({k: float(v) for k, v in (totals or {}).items()})


def evaluate(graphdef: nnx.GraphDef, state: nnx.State, ds: Dataset, task: Task | str,
             batch_size: int, *, rows: tuple[int, int] | None = None,
             put: Callable[[dict[str, np.ndarray]], Any] | None = None,
             placement: StepSharding | None = None) -> dict[str, float]:
    """Exact metrics over the whole eval split of ``ds`` (padding rows weighted out).

    Args:
      graphdef, state: ``nnx.split`` of a :class:`astroflax.train.steps.TrainState` or of a
        bare model.
      ds: the dataset (its ``eval`` split is read). task: what the batches hold and give.
      batch_size: examples per global batch.
      rows: this process's rows of each global batch (default: all).
      put: turns this process's numpy rows into the step's input (e.g. a global sharded
        array); default: as they are (one device).
      placement: parameter placement inside the step (see :class:`StepSharding`).
    """
    task = as_task(task)
    put = put or (lambda b: b)
    return summed_eval_metrics(
        (eval_step(graphdef, state, put(b), task=task, placement=placement)
         for b in eval_batches(ds, batch_size, rows)), task)
