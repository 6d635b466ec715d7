"""The device mesh of a run (``config.mesh``): data parallelism and FSDP from one rules table.

``config.mesh`` fields:

* ``axes``: mesh axis names, e.g. ``("data",)`` or ``("data", "fsdp")``.
* ``shape``: one size per axis; one entry may be -1 (= the remaining devices). Default
  ``(-1,)``: all devices on ``data``.
* ``batch_axes``: the mesh axes the global batch is split over (FSDP shards the batch over
  its axis too, e.g. ``("data", "fsdp")``).
* ``rules``: ``((logical_name, mesh_axis), ...)`` binding the models' logical parameter axes
  (:data:`astroflax.nn.sharding.LOGICAL_AXES`) to mesh axes (a name, a tuple of names, or
  None); unnamed ones are replicated. FSDP (``experiments.configs.common.fsdp``):
  ``(("embed", "fsdp"), ("vocab", "fsdp"))``; tensor parallelism adds ``("heads", "model"),
  ("mlp", "model")``.

How a parameter's dimensions get mesh axes (:func:`parameter_spec`): rules are applied in
their order, one dimension at a time, and a dimension keeps its mesh axis only if that axis is
not already used by an earlier rule on the same parameter and the axis size divides the
dimension; otherwise that dimension is replicated. So one table serves every model: the
WikiText-2 LM's tied ``("vocab", "embed")`` table of 50,257 x 512 is sharded over ``embed``
(the rule listed first; 50,257 divides by nothing), IMDB's untied ``("vocab", None)`` GloVe
table over ``vocab``. Adam moments follow their parameters.

Mesh axes are ``AxisType.Auto`` (GSPMD propagation), so the models need no activation
annotations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

Rules = Sequence[tuple[str, str | Sequence[str] | None]]


def resolve_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """``shape`` with its -1 entry (if any) filled so the product is ``num_devices``."""
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) == 1:
        rest = math.prod(s for s in shape if s != -1)
        if rest > 0 and num_devices % rest == 0:
            return tuple(num_devices // rest if s == -1 else s for s in shape)
    return shape


def make_mesh(mesh_cfg: Any, devices: Sequence[jax.Device]) -> jax.sharding.Mesh:
    """The ``Auto``-typed mesh of ``config.mesh`` over ``devices`` (validated beforehand)."""
    axes = tuple(mesh_cfg["axes"])
    shape = resolve_shape(mesh_cfg["shape"], len(devices))
    return jax.make_mesh(shape, axes, axis_types=(jax.sharding.AxisType.Auto,) * len(axes),
                         devices=list(devices))


def batch_sharding(mesh: jax.sharding.Mesh, mesh_cfg: Any) -> NamedSharding:
    """Leading (batch) dimension split over ``config.mesh.batch_axes``."""
    return NamedSharding(mesh, P(tuple(mesh_cfg["batch_axes"])))


def to_global(batch: Mapping[str, np.ndarray], sharding: NamedSharding, batch_size: int
              ) -> dict[str, jax.Array]:
    """This process's rows (:func:`process_rows`) -> one global ``[batch_size, ...]`` array per key.

    Every process calls it with its own rows of the same global batch.
    """
    return {k: jax.make_array_from_process_local_data(sharding, v, (batch_size, *v.shape[1:]))
            for k, v in batch.items()}


def process_rows(sharding: NamedSharding, batch_size: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of every global batch that this process's devices hold.

    Read from ``sharding`` itself (not assumed from the process index), so it is right for any
    device order and for meshes where processes replicate the batch (e.g. a model axis across
    hosts): the data pipeline then reads exactly these rows.

    Args:
      sharding: the batch sharding (leading dimension split over the batch axes).
      batch_size: the global batch size.

    Raises:
      ValueError: the process's rows are not one contiguous block, or it holds none.
    """
    spans = sorted({(s[0].start or 0, batch_size if s[0].stop is None else s[0].stop)
                    for s in sharding.addressable_devices_indices_map((batch_size,)).values()})
    if not spans:
        raise ValueError("this process has no device in the mesh: with several processes the "
                         "mesh must span every process's devices (config.mesh.num_devices "
                         "unset, train.data_parallel=True)")
    start, stop = spans[0][0], spans[0][1]
    for a, b in spans[1:]:
        if a > stop:
            raise ValueError(f"this process holds rows {spans} of each batch of {batch_size}: "
                             "not one contiguous block; order the mesh so that each process's "
                             "devices are adjacent along config.mesh.batch_axes")
        stop = max(stop, b)
    return start, stop


def mesh_axes_of(target: str | Sequence[str] | None) -> tuple[str, ...]:
    """The mesh axes a rule's target names: ``"fsdp"``, ``("data", "fsdp")`` or None (none)."""
    return () if target is None else (target,) if isinstance(target, str) else tuple(target)


def without_axes(spec: P, axes: Sequence[str]) -> P:
    """``spec`` with the mesh ``axes`` removed.

    E.g. ``P(("data", "fsdp"), "model")`` minus ``("fsdp",)`` -> ``P("data", "model")``.
    """
    drop = set(axes)
    out: list[Any] = []
    for entry in spec:
        kept = tuple(a for a in mesh_axes_of(entry) if a not in drop)
        out.append(kept[0] if len(kept) == 1 else (kept or None))
    return P(*out)


def parameter_spec(names: Sequence[str | None], shape: Sequence[int], rules: Rules,
                   axis_sizes: dict[str, int]) -> P:
    """The ``PartitionSpec`` of one parameter (see the module docstring for the policy).

    Args:
      names: the parameter's logical axis names, one per dimension (None = unnamed).
      shape: its shape. rules: ``config.mesh.rules``, in priority order.
      axis_sizes: mesh axis name -> size (``dict(mesh.shape)``).

    Returns:
      E.g. ``P(None, "fsdp")`` for a ``("vocab", "embed")`` table of 50,257 x 512 under FSDP
      on 8 devices.
    """
    order = {name: i for i, (name, _) in enumerate(rules)}
    targets = {name: mesh_axes_of(target) for name, target in rules}
    spec: list[Any] = [None] * len(shape)
    used: set[str] = set()
    named = [d for d, n in enumerate(names) if n is not None and targets.get(n)]
    for d in sorted(named, key=lambda d: order[names[d]]):
        axes = targets[names[d]]
        if used & set(axes) or shape[d] % math.prod(axis_sizes[a] for a in axes):
            continue
        spec[d] = axes[0] if len(axes) == 1 else axes
        used.update(axes)
    return P(*spec)


def rule_shardings(abstract_state: Any, mesh: jax.sharding.Mesh, rules: Rules) -> Any:
    """A ``NamedSharding`` for every leaf of an abstract ``nnx.State`` (same tree structure).

    Variables carrying logical ``out_sharding`` metadata (parameters, and the optimizer moments
    nnx copies it to) get :func:`parameter_spec`; the rest (step counters, RNG keys) are
    replicated.
    """
    from flax import nnx

    variables = jax.tree.leaves(abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    treedef = jax.tree.structure(abstract_state)
    if treedef.num_leaves != len(variables):
        raise ValueError("rule_shardings: expected an nnx.State whose leaves are Variables")
    sizes = dict(mesh.shape)
    out = []
    for var in variables:
        names = var.get_metadata().get("out_sharding") if isinstance(var, nnx.Variable) else None
        shape = var.get_value().shape if isinstance(var, nnx.Variable) else var.shape
        spec = P() if not names else parameter_spec(names, shape, rules, sizes)
        out.append(NamedSharding(mesh, spec))
    return jax.tree.unflatten(treedef, out)
