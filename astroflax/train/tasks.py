"""Tasks: what a batch holds, which loss and metrics it gives, and what "better" means.

A task is a small frozen (hashable) object, so the jitted steps take it as a static argument.
The trainer, ``experiments.evaluate`` and the studies ask the task, never the dataset's name:

* :meth:`Task.forward` — the model's per-example sums ``(nll, correct, count)``, each ``[B]``
  float32: the training loss is ``sum(nll) / sum(count)``, and evaluation adds the sums of
  every batch (weighted, so padding rows count zero) before :meth:`Task.summarise`.
* :meth:`Task.summarise` — the eval metrics from those totals (``eval_loss`` and the task's
  own, e.g. ``eval_accuracy`` or ``eval_perplexity``).
* :attr:`Task.metric`, :attr:`Task.higher_is_better` and :meth:`Task.score` — which metric
  picks the best checkpoint and how.

``Dataset.task`` names the task of a dataset; :func:`for_dataset` gives its object (and
refuses a name with none). A new task is one subclass here and one entry in :data:`TASKS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax
from flax import nnx
from jax import Array

from astroflax.data.base import IGNORE

Batch = Mapping[str, Array]
Sums = tuple[Array, Array, Array]


@dataclasses.dataclass(frozen=True)
class Task:
    """Base: what every task answers (see the module docstring)."""

    name: str = "task"
    #: The eval metric that scores a checkpoint (summary "best", orbax's best checkpoint).
    metric: str = "eval_accuracy"
    higher_is_better: bool = True
    #: Whether the summary reports epochs to ``train.target_accuracy`` (accuracy tasks).
    has_accuracy_target: bool = True

    def forward(self, model: nnx.Module, batch: Batch) -> Sums:
        """Per-example ``(nll_sum, correct, count)``, each ``[B]`` float32."""
        raise NotImplementedError

    def summarise(self, totals: Mapping[str, float]) -> dict[str, float]:
        """Eval metrics from summed ``{"nll", "correct", "count"}`` over a split."""
        mean_nll = totals["nll"] / totals["count"]
        return {"eval_loss": mean_nll, "eval_accuracy": totals["correct"] / totals["count"]}

    def score(self, metrics: Mapping[str, float]) -> float:
        """Higher is better: the metric, or its negation when lower is better."""
        value = metrics[self.metric]
        return value if self.higher_is_better else -value

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` beats ``b`` (ties do not)."""
        return a > b if self.higher_is_better else a < b


def _token_sums(logits: Array, targets: Array, labelled: Array | None) -> Sums:
    """Sums over each sequence of ``logits [B, T, V]`` against ``targets [B, T]``.

    ``labelled [B, T]`` bool (None: every position) selects the positions that count.
    """
    logits = logits.astype(jnp.float32)
    safe = targets if labelled is None else jnp.where(labelled, targets, 0)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    pred = jnp.argmax(logits, -1).astype(targets.dtype)
    correct = (pred == targets).astype(jnp.float32)
    if labelled is None:
        T = jnp.asarray(nll.shape[1], jnp.float32)
        return nll.sum(1), correct.sum(1), jnp.broadcast_to(T, nll.shape[:1])
    w = labelled.astype(jnp.float32)
    return (nll * w).sum(1), (correct * w).sum(1), w.sum(1)


@dataclasses.dataclass(frozen=True)
class Classification(Task):
    """One label per example: ``inputs [B, ...]``, ``label [B]``, optional ``mask [B, T]``.

    The loss is the mean cross-entropy over examples; ``eval_accuracy`` the fraction right.
    """

    name: str = "classification"

    def forward(self, model: nnx.Module, batch: Batch) -> Sums:
        """``model(inputs[, mask=])`` -> logits ``[B, C]``; per-example NLL, 0/1, 1."""
        if "mask" in batch:
            logits, _ = model(batch["inputs"], mask=batch["mask"])
        else:
            logits, _ = model(batch["inputs"])
        logits = logits.astype(jnp.float32)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        pred = jnp.argmax(logits, -1).astype(batch["label"].dtype)  # int64 under x64
        correct = (pred == batch["label"]).astype(jnp.float32)
        return nll, correct, jnp.ones_like(nll)


@dataclasses.dataclass(frozen=True)
class LanguageModelling(Task):
    """Next-token prediction: ``inputs [B, T]``, ``targets [B, T]`` (every position counts).

    The loss is the mean NLL per token; ``eval_perplexity = exp(eval_loss)`` (its exponent
    capped at 700, so a diverged run reads a huge finite number) scores a checkpoint.
    """

    name: str = "lm"
    metric: str = "eval_perplexity"
    higher_is_better: bool = False
    has_accuracy_target: bool = False

    def forward(self, model: nnx.Module, batch: Batch) -> Sums:
        """``model(inputs)`` -> logits ``[B, T, V]``; sums over the ``T`` tokens, and ``T``."""
        logits, _ = model(batch["inputs"])
        return _token_sums(logits, batch["targets"], None)

    def summarise(self, totals: Mapping[str, float]) -> dict[str, float]:
        """``eval_loss``, ``eval_perplexity``, ``eval_token_accuracy``."""
        mean_nll = totals["nll"] / totals["count"]
        return {"eval_loss": mean_nll, "eval_perplexity": math.exp(min(mean_nll, 700.0)),
                "eval_token_accuracy": totals["correct"] / totals["count"]}


@dataclasses.dataclass(frozen=True)
class Recall(Task):
    """Labels at a subset of positions (associative recall): ``targets [B, T]``, IGNORE elsewhere.

    The model reads ``inputs [B, T]`` like a language model; loss and accuracy count only the
    positions whose target is not :data:`astroflax.data.base.IGNORE` (``-100``). A batch
    without any label contributes nothing (its count is 0).
    """

    name: str = "recall"

    def forward(self, model: nnx.Module, batch: Batch) -> Sums:
        """``model(inputs)`` -> logits ``[B, T, V]``; sums over the labelled positions."""
        logits, _ = model(batch["inputs"])
        targets = batch["targets"]
        return _token_sums(logits, targets, targets != IGNORE)


#: ``Dataset.task`` -> its task object.
TASKS: dict[str, Task] = {"classification": Classification(), "lm": LanguageModelling(),
                          "recall": Recall()}


def as_task(task: Task | str) -> Task:
    """``task`` itself, or the task object named by a ``Dataset.task`` string.

    Raises:
      ValueError: an unknown name (lists the known ones).
    """
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"task {task!r} is unknown; known: {sorted(TASKS)}")
    return TASKS[task]


def for_dataset(ds: Any) -> Task:
    """The task object of a :class:`astroflax.data.Dataset` (``ds.task``).

    Raises:
      ValueError: a task kind with no task object (lists the known ones).
    """
    if ds.task not in TASKS:
        raise ValueError(f"{ds.name}: task {ds.task!r} has no task object; known: "
                         f"{sorted(TASKS)}")
    return TASKS[ds.task]
