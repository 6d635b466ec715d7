"""The device mesh of a run (``config.mesh``): data parallelism and FSDP from one rules table.

``config.mesh`` fields:

* ``axes``: mesh axis names, e.g. ``("data",)`` or ``("data", "fsdp")``.
* ``shape``: one size per axis; one entry may be -1 (= the remaining devices). Default
  ``(-1,)``: all devices on ``data``.
* ``batch_axes``: the mesh axes the global batch is split over (FSDP shards the batch over
  its axis too, e.g. ``("data", "fsdp")``).
* ``rules``: ``((logical_name, mesh_axis), ...)`` binding the models' logical parameter axes
  (:data:`astroflax.nn.sharding.LOGICAL_AXES`) to mesh axes; unnamed ones are replicated.
  FSDP: ``(("embed", "fsdp"),)`` shards every parameter (and its Adam moments) over ``fsdp``.

Mesh axes are ``AxisType.Auto`` (GSPMD propagation, uneven shards padded), so the models need
no activation annotations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from astroflax.nn.sharding import axis_rules


def resolve_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """``shape`` with its -1 entry (if any) filled so the product is ``num_devices``."""
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) == 1:
        rest = math.prod(s for s in shape if s != -1)
        if rest > 0 and num_devices % rest == 0:
            return tuple(num_devices // rest if s == -1 else s for s in shape)
    return shape


def logical_rules(mesh_cfg: Any) -> tuple[tuple[str, Any], ...]:
    """The flax logical-axis rules of ``config.mesh.rules`` (every logical name covered)."""
    return axis_rules(**{name: (tuple(ax) if isinstance(ax, list) else ax)
                         for name, ax in mesh_cfg["rules"]})


def make_mesh(mesh_cfg: Any, devices: Sequence[jax.Device]) -> jax.sharding.Mesh:
    """The ``Auto``-typed mesh of ``config.mesh`` over ``devices`` (validated beforehand)."""
    axes = tuple(mesh_cfg["axes"])
    shape = resolve_shape(mesh_cfg["shape"], len(devices))
    return jax.make_mesh(shape, axes, axis_types=(jax.sharding.AxisType.Auto,) * len(axes),
                         devices=list(devices))


def batch_sharding(mesh: jax.sharding.Mesh, mesh_cfg: Any) -> NamedSharding:
    """Leading (batch) dimension split over ``config.mesh.batch_axes``."""
    return NamedSharding(mesh, P(tuple(mesh_cfg["batch_axes"])))


def process_rows(sharding: NamedSharding, batch_size: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of every global batch that this process's devices hold.

    Read from ``sharding`` itself (not assumed from the process index), so it is right for any
    device order and for meshes where processes replicate the batch (e.g. a model axis across
    hosts): the data pipeline then reads exactly these rows.

    Args:
      sharding: the batch sharding (leading dimension split over the batch axes).
      batch_size: the global batch size.

    Raises:
      ValueError: the process's rows are not one contiguous block.
    """
    spans = sorted({(s[0].start or 0, batch_size if s[0].stop is None else s[0].stop)
                    for s in sharding.addressable_devices_indices_map((batch_size,)).values()})
    start, stop = spans[0][0], spans[0][1]
    for a, b in spans[1:]:
        if a > stop:
            raise ValueError(f"this process holds rows {spans} of each batch of {batch_size}: "
                             "not one contiguous block; order the mesh so that each process's "
                             "devices are adjacent along config.mesh.batch_axes")
        stop = max(stop, b)
    return start, stop

