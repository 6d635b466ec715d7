"""Logical sharding annotations for every parameter, and the rules that bind them to a mesh.

Every parameter of :mod:`astroflax.nn` is created through :func:`partitioned`, which attaches
*logical* axis names (``"embed"``, ``"heads"``, ``"kv"``, ``"mlp"``, ``"vocab"``) as the
variable's ``out_sharding`` metadata. Logical names are not mesh axes, so binding them is left
to the caller:

* No mesh (tests, single device): the names are recorded but nothing is sharded. Flax 0.12
  shards eagerly by default and raises when a variable with ``out_sharding`` is created
  outside a mesh, so :func:`partitioned` turns eager sharding off unless a mesh *and* logical
  axis rules are active when the module is built.
* A mesh plus rules: build the model inside
  ``with jax.set_mesh(mesh), nnx.logical_axis_rules(axis_rules(embed="fsdp", heads="tp")):``
  and every parameter is created sharded (flax maps logical names through the rules).
* Or explicitly: ``nnx.get_partition_spec(nnx.state(model))`` under the same rules gives the
  mesh ``PartitionSpec`` of each parameter, e.g. for ``jax.jit(..., out_shardings=...)``.

Use :func:`axis_rules` to make the rules: flax leaves a logical name it has no rule for
unchanged, which is not a mesh axis; ``axis_rules`` maps every name of :data:`LOGICAL_AXES`
(to None = replicated unless given).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flax import nnx
from flax.core import meta
from flax.core import spmd as core_spmd

#: Logical axis names used by astroflax parameters (and ``batch``/``length`` for activations).
LOGICAL_AXES: tuple[str, ...] = ("batch", "length", "embed", "heads", "kv", "mlp", "vocab")


def axis_rules(**mesh_axes: str | Sequence[str] | None) -> tuple[tuple[str, Any], ...]:
    """Logical-to-mesh rules covering every name of :data:`LOGICAL_AXES`.

    Args:
      **mesh_axes: ``logical_name=mesh_axis`` (a mesh axis name, a tuple of them, or None);
        names not given are replicated (None).

    Returns:
      Rules for ``nnx.logical_axis_rules(...)``.

    Raises:
      ValueError: a name that is not a logical axis of astroflax.
    """
    unknown = sorted(set(mesh_axes) - set(LOGICAL_AXES))
    if unknown:
        raise ValueError(f"axis_rules: unknown logical axes {unknown}; allowed: {LOGICAL_AXES}")
    return tuple((name, mesh_axes.get(name)) for name in LOGICAL_AXES)


def eager_sharding_active() -> bool:
    """True when a mesh and logical axis rules are both set, so variables can be sharded now."""
    return meta.get_global_mesh() is not None and bool(core_spmd.get_logical_axis_rules())


def partitioned(init: Callable[..., Any], names: Sequence[str | None]) -> Callable[..., Any]:
    """Wraps an initializer so the parameter carries logical axis ``names`` (one per dim).

    Args:
      init: a ``jax.nn.initializers``-style ``init(key, shape, dtype)``.
      names: logical axis name (or None) for each dimension of the parameter.

    Returns:
      The initializer with ``out_sharding=names`` metadata, eager sharding on only inside a mesh
      with logical rules (see the module docstring).
    """
    return nnx.with_partitioning(init, tuple(names), eager_sharding=eager_sharding_active())


def param(value: Any, names: Sequence[str | None]) -> nnx.Param:
    """An ``nnx.Param`` holding ``value`` with logical axis ``names`` (see :func:`partitioned`)."""
    return nnx.Param(value, out_sharding=tuple(names), eager_sharding=eager_sharding_active())
