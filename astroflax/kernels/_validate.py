"""Argument checks shared by the public kernels: clear ``ValueError``s before anything traces."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import numpy as np


def fail(argument: str, expected: str, got: Any) -> None:
    """Raises ``ValueError`` naming the argument, what was expected and what came."""
    raise ValueError(f"{argument}: expected {expected}, got {got}")


def shape_of(x: Any) -> tuple[int, ...] | None:
    """The shape of an array-like (or None for None)."""
    return None if x is None else tuple(np.shape(x))


def dtype_of(x: Any) -> np.dtype:
    """The dtype of an array, tracer or array-like (lists and scalars get NumPy's)."""
    return x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype


def check_arrays(names: tuple[str, ...], arrays: tuple[Any, ...]) -> None:
    """Checks each of ``arrays`` is an array (jax, NumPy or a tracer), not a Python list.

    Lists are refused rather than converted: their dtype would be a guess (float64 or float32
    depending on ``jax_enable_x64``).
    """
    for name, x in zip(names, arrays, strict=True):
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            fail(name, "a jax or NumPy array (wrap a list in jnp.asarray with the dtype you "
                 "want)", type(x).__name__)


def check_same_dtype(names: tuple[str, ...], arrays: tuple[Any, ...]) -> None:
    """Checks ``arrays`` share one dtype: mixed inputs are refused, never silently promoted.

    Which precision attention runs in is the caller's explicit choice.
    """
    dtypes = [np.dtype(x.dtype) for x in arrays]
    if len(set(dtypes)) > 1:
        fail("/".join(names), "one dtype for all of them (cast them to one, e.g. "
             "x.astype(jnp.float32))",
             ", ".join(f"{n}: {d}" for n, d in zip(names, dtypes, strict=True)))


def check_mask(mask: Any, batch: int, seq: int) -> None:
    """Checks a padding mask is None or bool ``[batch, seq]`` (True = real token)."""
    if mask is None:
        return
    if shape_of(mask) != (batch, seq) or dtype_of(mask) != np.bool_:
        fail("mask", f"a bool array of shape {(batch, seq)} (True = real token)",
             f"{dtype_of(mask)} {shape_of(mask)}")


def check_rank(name: str, x: Any, rank: int, layout: str) -> tuple[int, ...]:
    """Checks ``x.ndim == rank``; ``layout`` names the axes for the message (``[B, T, H, m]``)."""
    shape = shape_of(x)
    if shape is None or len(shape) != rank:
        fail(name, f"a rank-{rank} array {layout}", f"shape {shape}")
    return shape


def is_concrete(x: Any) -> bool:
    """True when ``x`` has a value now (not a tracer), so its value can be checked."""
    return not isinstance(x, jax.core.Tracer)


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Checks a concrete scalar (or array) is finite and > 0 (>= 0 with ``allow_zero``).

    Traced values cannot be inspected and pass unchecked.
    """
    if value is None or not is_concrete(value):
        return
    arr = np.asarray(value, dtype=np.float64)
    positive = arr >= 0 if allow_zero else arr > 0
    if not (np.all(np.isfinite(arr)) and np.all(positive)):
        got = arr.tolist() if arr.size <= 8 else f"an array with min {arr.min()}"
        fail(name, "finite values >= 0" if allow_zero else "finite values > 0", got)


def check_static_scalar(name: str, value: Any) -> None:
    """Checks ``value`` is a concrete real scalar: it selects the compiled kernel (static)."""
    if isinstance(value, jax.core.Tracer):
        fail(name, "a static Python number (it is baked into the compiled kernel; pass it "
             "outside jit or as a static argument)", "a traced value")
    if isinstance(value, bool) or np.ndim(value) != 0 or not np.isrealobj(value):
        fail(name, "a real scalar", repr(value))


def check_flag(name: str, value: Any) -> None:
    """Checks ``value`` is a bool (``"no"`` must not silently mean True)."""
    if not isinstance(value, bool | np.bool_):
        fail(name, "a bool", repr(value))


def check_positive_int(name: str, value: Any) -> None:
    """Checks ``value`` is an integer >= 1 (Python or NumPy; not bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        fail(name, "a positive int", repr(value))
