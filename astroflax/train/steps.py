"""The optimiser, the training state, and the one train step and one eval step every task shares.

What a batch holds and which loss it gives is the task's (:mod:`astroflax.train.tasks`).

The training state is :class:`TrainState` (a model and its optimizer) split into a static
``graphdef`` and an ``nnx.State`` with two named entries, ``state.model`` (parameters, dropout
RNG counters) and ``state.optimizer`` (Adam moments, step count): the same pytree is what is
jitted, donated, sharded and checkpointed. The steps are pure functions of ``(state, batch)``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax import Array

from astroflax.train.mesh import Rules, rule_shardings, without_axes
from astroflax.train.tasks import Task, as_task

Batch = Mapping[str, Array]


def make_schedule(*, learning_rate: float, schedule: str, warmup_steps: int, total_steps: int
                  ) -> optax.Schedule:
    """Linear warmup over ``warmup_steps`` to ``learning_rate``, then cosine to 0 or constant."""
    warmup_steps = min(int(warmup_steps), max(int(total_steps) - 1, 0))
    if schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, warmup_steps=max(warmup_steps, 0),
            decay_steps=max(int(total_steps), warmup_steps + 1), end_value=0.0)
    if schedule == "constant":
        if warmup_steps == 0:
            return optax.constant_schedule(learning_rate)
        return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps),
                                     optax.constant_schedule(learning_rate)], [warmup_steps])
    raise ValueError(f"schedule: expected 'cosine' or 'constant', got {schedule!r}")


def make_optimizer(schedule: optax.Schedule, *, weight_decay: float, b1: float = 0.9,
                   b2: float = 0.999, grad_clip_norm: float | None = None
                   ) -> optax.GradientTransformation:
    """AdamW (decoupled weight decay) with optional global-norm gradient clipping first."""
    adamw = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
    if grad_clip_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), adamw)


@dataclasses.dataclass(frozen=True)
class StepSharding:
    """Where a jitted step puts parameters while it uses them (hashable: a static argument).

    FSDP stores a parameter split over the mesh axes that also split the batch. Left to
    itself, GSPMD then often keeps the weight split and moves the activations instead: for
    the WikiText-2 preset's tied output table, sharded over ``D``, it contracted each device's
    slice of ``D`` for the *whole* batch and all-reduced full ``[B, T, V]`` logits (6 GiB of
    temporaries per device at every device count). Gathering each such parameter over the
    batch axes where it is used (ZeRO-3) keeps every activation split by the batch; its
    gradient is pinned to the stored sharding (:func:`_gather_for_use`), so the gradient sum
    over the batch is a reduce-scatter (XLA:CPU lowers it to an all-reduce and a slice).

    Attributes:
      params: ``(path, in_use, stored)`` for each parameter that needs gathering: the
        ``jax.tree_util.keystr`` of its path in the model's ``Param`` state, and its
        shardings while used and as stored.
    """

    params: tuple[tuple[str, jax.sharding.Sharding, jax.sharding.Sharding], ...] = ()

    @classmethod
    def gather_over(cls, state: nnx.State, axes: Sequence[str]) -> StepSharding:
        """For ``state`` (a sharded :class:`TrainState`'s): gather parameters over ``axes``."""
        entries = []
        params = nnx.filter_state(state.model, nnx.Param)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            stored = leaf.sharding
            if not isinstance(stored, jax.sharding.NamedSharding):
                continue
            spec = without_axes(stored.spec, axes)
            if spec != stored.spec:
                entries.append((jax.tree_util.keystr(path),
                                jax.sharding.NamedSharding(stored.mesh, spec), stored))
        return cls(tuple(entries))

    def apply(self, model: nnx.Module) -> None:
        """Gathers ``model``'s parameters (traced, inside the step) for use.

        Raises:
          ValueError: a listed parameter is not in ``model`` (built for another model).
        """
        if not self.params:
            return
        lookup = {path: (in_use, stored) for path, in_use, stored in self.params}
        leaves, treedef = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))
        new, found = [], 0
        for p, x in leaves:
            key = jax.tree_util.keystr(p)
            if key in lookup:
                x, found = _gather_for_use(x, *lookup[key]), found + 1
            new.append(x)
        if found != len(lookup):
            raise ValueError(f"StepSharding: {len(lookup) - found} of its {len(lookup)} "
                             "parameters are not in this model; build it with "
                             "StepSharding.gather_over(state of this model, batch axes)")
        nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _gather_for_use(x: Array, in_use: jax.sharding.Sharding, stored: jax.sharding.Sharding
                    ) -> Array:
    """``x`` laid out as ``in_use``; its gradient laid out as ``stored``.

    A plain ``with_sharding_constraint`` would pin the gradient to ``in_use`` too: every
    device would then keep full-size gradients (measured: 57 MiB of temporaries on 8 devices
    against 42 on 1 for a small tied-table LM; 41 with this function).
    """
    return jax.lax.with_sharding_constraint(x, in_use)


def _gather_fwd(x: Array, in_use: jax.sharding.Sharding, stored: jax.sharding.Sharding
                ) -> tuple[Array, None]:
    return _gather_for_use(x, in_use, stored), None


def _gather_bwd(in_use: jax.sharding.Sharding, stored: jax.sharding.Sharding, _: None,
                g: Array) -> tuple[Array]:
    return (jax.lax.with_sharding_constraint(g, stored),)


_gather_for_use.defvjp(_gather_fwd, _gather_bwd)


class TrainState(nnx.Module):
    """What one train step updates: ``model`` and its ``optimizer`` (an ``nnx.Optimizer``).

    ``nnx.split`` of it gives ``(graphdef, state)`` with ``state.model`` and ``state.optimizer``;
    ``nnx.merge(graphdef, state)`` gives it back.
    """

    def __init__(self, model: nnx.Module, optimizer: nnx.Optimizer):
        self.model = model
        self.optimizer = optimizer


def _train_step(graphdef: nnx.GraphDef, state: nnx.State, batch: Batch, *, task: Task,
                placement: StepSharding | None) -> tuple[nnx.State, dict[str, Array]]:
    """The body of :func:`make_train_step`'s step (see there)."""
    train = nnx.merge(graphdef, state)
    train.model.train()

    def loss_fn(m: nnx.Module) -> Array:
        if placement is not None:
            placement.apply(m)
        nll, _, count = task.forward(m, batch)
        return nll.sum() / count.sum()

    loss, grads = nnx.value_and_grad(loss_fn)(train.model)
    # optax's Adam bias correction raises a Python float to the int32 step count, which strict
    # dtype promotion (the test suite's setting) rejects; the model itself stays strict.
    with jax.numpy_dtype_promotion("standard"):
        train.optimizer.update(train.model, grads)
    return nnx.state(train), {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def make_train_step(graphdef: nnx.GraphDef, *, task: Task | str,
                    placement: StepSharding | None = None, shardings: Any = None) -> Any:
    """The jitted train step ``step(state, batch) -> (state, {"loss", "grad_norm"})``.

    One AdamW step on ``batch``; the metrics are f32 scalars: the loss is the mean over
    examples (classification) or over tokens (LM), ``grad_norm`` the global L2 norm of the
    gradients. Dropout draws from the model's ``dropout`` stream, whose counter is part of
    ``state``. ``state`` (the ``nnx.State`` of the :class:`TrainState` that ``graphdef``
    describes) is donated: its buffers are reused for the new state.

    Args:
      graphdef: from :func:`create_train_state` / :func:`abstract_state`.
      task: the :class:`astroflax.train.tasks.Task` (or its name, e.g. ``"lm"``): what the
        batch holds and which loss it gives.
      placement: parameter placement while in use, on a mesh (see :class:`StepSharding`).
      shardings: the new state's shardings (:func:`state_shardings` of the initial state), so
        FSDP parameters and moments stay sharded as the rules say, step after step; None
        leaves them to the compiler.

    The training loop compiles it ahead of time (``step.lower(state, batch).compile()``), so
    the compile is timed as such and a state of another pytree structure is an error, not a
    silent second compile.
    """
    body = functools.partial(_train_step, graphdef, task=as_task(task), placement=placement)
    return jax.jit(body, donate_argnums=0,
                   out_shardings=None if shardings is None else (shardings, None))


def eval_step(graphdef: nnx.GraphDef, state: nnx.State, batch: Batch, *, task: Task | str,
              placement: StepSharding | None = None) -> dict[str, Array]:
    """Weighted sums over ``batch`` (``weight [B]``: 0 for padding): nll, correct, count.

    Dropout is off. Sums (not means) so the caller can add batches and processes exactly.
    ``graphdef`` / ``state``: a :class:`TrainState`'s or a bare model's (``nnx.split`` of
    either); ``task`` and ``placement`` as for :func:`make_train_step`.
    """
    return _eval_step(graphdef, state, batch, task=as_task(task), placement=placement)


@functools.partial(jax.jit, static_argnames=("graphdef", "task", "placement"))
def _eval_step(graphdef: nnx.GraphDef, state: nnx.State, batch: Batch, *, task: Task,
               placement: StepSharding | None) -> dict[str, Array]:
    merged = nnx.merge(graphdef, state)
    model = merged.model if isinstance(merged, TrainState) else merged
    model.eval()
    if placement is not None:
        placement.apply(model)
    nll, correct, count = task.forward(model, batch)
    w = batch["weight"].astype(jnp.float32)
    return {"nll": jnp.sum(nll * w), "correct": jnp.sum(correct * w),
            "count": jnp.sum(count * w)}


def _creator(model_name: str, model_kw: Mapping[str, Any], tx: optax.GradientTransformation,
             seed: int) -> Any:
    from astroflax.models import create_model

    def create() -> TrainState:
        model = create_model(model_name, rngs=nnx.Rngs(params=seed, dropout=seed + 1),
                             **model_kw)
        return TrainState(model, nnx.Optimizer(model, tx, wrt=nnx.Param))

    return create


def abstract_state(model_name: str, model_kw: Mapping[str, Any],
                   tx: optax.GradientTransformation, mesh: jax.sharding.Mesh,
                   rules: Rules = ()) -> tuple[nnx.GraphDef, nnx.State]:
    """``(graphdef, state)`` of a :class:`TrainState` as ``ShapeDtypeStruct`` s with shardings.

    Nothing is allocated. Shardings follow each variable's logical axes through ``rules``
    (:func:`astroflax.train.mesh.parameter_spec`); the rest is replicated. Used to create the
    state directly sharded, as a restore target, and for compiled memory figures.
    """
    # Neither a flax mesh nor logical rules in context: flax would map the names itself (no
    # priority, no divisibility check); the mesh policy resolves them below instead.
    graphdef, abstract = nnx.split(nnx.eval_shape(_creator(model_name, model_kw, tx, 0)))
    shardings = rule_shardings(abstract, mesh, rules)
    return graphdef, jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def create_train_state(model_name: str, model_kw: Mapping[str, Any],
                       tx: optax.GradientTransformation, seed: int,
                       mesh: jax.sharding.Mesh | None = None,
                       rules: Rules = ()) -> tuple[nnx.GraphDef, nnx.State]:
    """A new :class:`TrainState`, split: ``(graphdef, state)``.

    The model is ``create_model(model_name, **model_kw)``, its optimizer ``tx``; ``state``
    has ``state.model`` and ``state.optimizer``.

    Parameters draw from ``seed``, dropout from ``seed + 1`` (separate streams, so changing
    dropout does not change the initialisation).

    With a ``mesh``, the state is created directly sharded: :func:`abstract_state` gives each
    leaf's sharding from its logical axes and ``rules`` (``config.mesh.rules``), and one jitted
    init writes every shard where it belongs, so no full copy of the model is ever built on
    one device. Adam moments follow their parameters; everything else (step, RNG counters) is
    replicated.
    """
    create = _creator(model_name, model_kw, tx, seed)
    if mesh is None:
        return nnx.split(create())
    graphdef, abstract = abstract_state(model_name, model_kw, tx, mesh, rules)
    shardings = state_shardings(abstract)
    state = jax.jit(lambda: nnx.split(create())[1], out_shardings=shardings)()
    return graphdef, state


def state_shardings(state: nnx.State) -> Any:
    """The sharding of every leaf of ``state`` (arrays or abstract ``ShapeDtypeStruct`` s)."""
    return jax.tree.map(lambda a: a.sharding, state)


def load_pretrained(graphdef: nnx.GraphDef, state: nnx.State,
                    pretrained: Mapping[str, Any]) -> nnx.State:
    """``state`` with a dataset's pretrained tables copied into its model (after init).

    The model must define ``load_pretrained(pretrained)`` (e.g.
    :meth:`astroflax.models.AstroTextClassifier.load_pretrained` for GloVe vectors). The
    optimizer's moments start at zero whatever the parameters, so this equals initialising
    with the table.

    Raises:
      ValueError: the model takes no pretrained tables, or they do not fit it.
    """
    train = nnx.merge(graphdef, state)
    if not hasattr(train.model, "load_pretrained"):
        raise ValueError(f"{type(train.model).__name__} takes no pretrained tables "
                         f"({sorted(pretrained)}); unset the data option that gives them")
    train.model.load_pretrained(pretrained)
    return nnx.split(train)[1]
