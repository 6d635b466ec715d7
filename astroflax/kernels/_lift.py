"""Lifts a per-head kernel to ``[batch, seq, heads, *]`` arrays with two nested ``jax.vmap``s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


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
