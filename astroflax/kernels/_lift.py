"""Lifts a per-head kernel to ``[batch, seq, heads, *]`` arrays: nested ``jax.vmap``s, or groups.

:func:`lift_over_batch_and_heads` maps every (example, head) pair at once (two ``vmap``s);
:func:`lift_in_groups` runs them a few at a time (``lax.map`` over groups of pairs), so that a
kernel whose per-head intermediates are large (the causal sigmoid path's ``[C, m, d]`` prefix
states) keeps them in cache instead of streaming ``B·H`` copies through main memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def lift_over_batch_and_heads(head_fn: Callable[..., Any], *, batch_axes: tuple, head_axes: tuple,
                              out_batch_axes: Any, out_head_axes: Any) -> Callable[..., Any]:
    """Returns ``head_fn`` vmapped over heads (inner) and batch (outer).

    ``head_axes`` index the arrays as the inner function sees them, i.e. with the batch axis
    already removed. An argument mapped over neither (``None`` in both) is computed once:
    vmap leaves values that depend only on unbatched inputs unbatched, so, e.g., the
    positional rates ``φ(A)`` shared by the whole batch are evaluated once, not per example.
    """
    per_batch = jax.vmap(head_fn, in_axes=head_axes, out_axes=out_head_axes)
    return jax.vmap(per_batch, in_axes=batch_axes, out_axes=out_batch_axes)


def _to_pairs(x: jax.Array, batch_axis: int | None, head_axis: int | None, B: int,
              H: int) -> jax.Array:
    # [..] with a batch axis and a head axis (either may be absent: broadcast) -> [B·H, ..].
    if batch_axis is None:
        x = jnp.broadcast_to(x[None], (B, *x.shape))
    else:
        x = jnp.moveaxis(x, batch_axis, 0)
    if head_axis is None:
        x = jnp.broadcast_to(x[:, None], (B, H, *x.shape[1:]))
    else:
        x = jnp.moveaxis(x, head_axis + 1, 1)  # head_axis counts without the batch axis
    return x.reshape(B * H, *x.shape[2:])


def _from_pairs(x: jax.Array, batch_axis: int, head_axis: int, B: int, H: int) -> jax.Array:
    # [B·H, ..] -> the output layout: head axis (counted without the batch axis), then batch.
    x = jnp.moveaxis(x.reshape(B, H, *x.shape[1:]), 1, head_axis + 1)
    return jnp.moveaxis(x, 0, batch_axis)


def lift_in_groups(head_fn: Callable[..., Any], *, batch_axes: tuple, head_axes: tuple,
                   out_batch_axes: tuple, out_head_axes: tuple, batch_size: int, num_heads: int,
                   group_size: int) -> Callable[..., Any]:
    """``head_fn`` over every (example, head) pair, ``group_size`` pairs at a time.

    Same arguments and result as :func:`lift_over_batch_and_heads` (plus the sizes ``B``, ``H``
    and the group size), for a ``head_fn`` returning a tuple of arrays. The ``B·H`` pairs are
    gathered into one leading axis and ``jax.lax.map(..., batch_size=group_size)`` runs the
    groups in sequence, each group vmapped. An argument mapped over neither axis is passed
    whole (computed once, as with the vmaps); one mapped over only one is broadcast over the
    other (e.g. the positional keys, shared by the batch: their rates are then evaluated per
    example, ``T·m`` work per pair, small beside the ``T·m·d`` of the kernel).
    """
    B, H = batch_size, num_heads

    def lifted(*args):
        shared = [b is None and h is None for b, h in zip(batch_axes, head_axes, strict=True)]
        mapped = tuple(None if s else jax.tree.map(lambda y, b=b, h=h: _to_pairs(y, b, h, B, H), x)
                       for x, b, h, s in zip(args, batch_axes, head_axes, shared, strict=True))

        def one_pair(xs):
            full = [a if s else x for a, x, s in zip(args, xs, shared, strict=True)]
            return head_fn(*full)

        outs = jax.lax.map(one_pair, mapped, batch_size=group_size)
        return tuple(jax.tree.map(lambda y, b=b, h=h: _from_pairs(y, b, h, B, H), out)
                     for out, b, h in zip(outs, out_batch_axes, out_head_axes, strict=True))

    return lifted
