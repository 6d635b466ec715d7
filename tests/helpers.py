"""Shared test helpers: relative-error comparison and random attention inputs."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

#: The repository root (the working directory of the runner subprocesses).
REPO = Path(__file__).resolve().parents[1]


def train_losses(workdir: Path) -> np.ndarray:
    """The ``train_loss`` column of a run's ``metrics.jsonl``, in step order."""
    from astroflax.train.metrics import read_metrics

    return np.array([r["train_loss"] for r in read_metrics(Path(workdir) / "metrics.jsonl")
                     if "train_loss" in r])


def assert_close(actual, expected, *, rtol: float = 1e-10, atol: float = 0.0,
                 name: str = "") -> None:
    """Asserts ``max|a - e| <= atol + rtol * max|e|``; NaN/Inf in either side fails first."""
    a = np.asarray(jnp.asarray(actual, dtype=jnp.float64) if hasattr(actual, "dtype") else actual,
                   dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{name}: shape {a.shape} != expected {e.shape}"
    assert np.all(np.isfinite(a)), f"{name}: actual has NaN/Inf"
    assert np.all(np.isfinite(e)), f"{name}: expected has NaN/Inf"
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    err = float(np.max(np.abs(a - e))) if e.size else 0.0
    assert err <= atol + rtol * scale, (
        f"{name}: max abs error {err:.3e} > atol {atol:.1e} + rtol {rtol:.1e} * scale {scale:.3e}"
        f" (relative {err / max(scale, 1e-300):.3e})"
    )


def normal(seed: int, shape: tuple[int, ...], dtype=jnp.float64, scale: float = 1.0):
    """Standard normal draws of ``shape`` (times ``scale``), by NumPy: no XLA program to compile.

    ``jax.random`` draws of a new shape are new XLA programs (threefry); compiling them took
    seconds per test on the suite's CPUs, for data whose only requirement is to be random.
    """
    return jnp.asarray((scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype))


def uniform(seed: int, shape: tuple[int, ...], dtype=jnp.float64, low: float = 0.0,
            high: float = 1.0):
    """Uniform draws on ``[low, high)`` of ``shape``, by NumPy (see :func:`normal`)."""
    return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape).astype(dtype))


def random_qkv(seed: int, *, B: int = 2, T: int = 7, H: int = 3, m: int = 5, d: int = 4,
               dtype=jnp.float64, scale: float = 1.0):
    """Random ``q, k: [B, T, H, m]``, ``v: [B, T, H, d]``, and raw positional keys ``[T, H, m]``.

    Drawn by NumPy (see :func:`normal`).
    """
    rng = np.random.default_rng(seed)

    def draw(shape, s=scale):
        return jnp.asarray((s * rng.standard_normal(shape)).astype(dtype))

    q, k, v = draw((B, T, H, m)), draw((B, T, H, m)), draw((B, T, H, d), 1.0)
    return q, k, v, draw((T, H, m))


def padding_mask(B: int, T: int, lengths) -> jnp.ndarray:
    """``[B, T]`` bool mask, True for the first ``lengths[b]`` tokens (right padding)."""
    return jnp.asarray(np.arange(T)[None, :] < np.asarray(lengths)[:, None])


def left_padding_mask(B: int, T: int, lengths) -> jnp.ndarray:
    """``[B, T]`` bool mask, True for the last ``lengths[b]`` tokens (left padding)."""
    return jnp.asarray(np.arange(T)[None, :] >= T - np.asarray(lengths)[:, None])
