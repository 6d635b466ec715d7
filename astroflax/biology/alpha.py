"""How well one exponent alpha describes the Ca2+-versus-rate curve: intervals over seeds.

The paper states ``alpha = 0.25`` for ``Ca(r) - Ca_rest ~ r^alpha`` (its Fig. 3 and Eq. 14).
A single exponent is only meaningful if the curve is a power law over the range it is fitted
on; these functions measure that from per-seed curves ``values [R, K]`` (R rates, K independent
seeds), treating the seeds as the unit of replication:

* :func:`mean_ci`: the curve itself, mean and 95 % Student-t interval over seeds per rate.
* :func:`local_exponents`: the slope ``d log(Ca - Ca_rest) / d log r`` between neighbouring
  rates, per seed, with its mean and t-interval over seeds. A power law has a constant slope.
* :func:`fit_ranges`: alpha fitted over each declared rate range, with two intervals: the
  least-squares t-interval of the mean curve (its width is the lack of fit, which is systematic
  rather than random, so that interval is not a sampling interval) and the t-interval over
  seeds of the per-seed fitted alphas (the sampling uncertainty of the fit over that range).

NumPy only, float64.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from astroflax.biology.fit import fit_power_law, t_quantile_975


def mean_ci(values: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95 % Student-t interval over ``axis`` (the seeds).

    Args:
      values: samples, e.g. ``[R, K]`` with seeds on the last axis; K >= 2.
      axis: the axis of independent samples.

    Returns:
      ``(mean, lo, hi)``, each of ``values``' shape without ``axis``. The half-width is
      ``t_{0.975, K-1} · s / sqrt(K)`` with ``s`` the sample standard deviation (ddof=1).
    """
    v = np.asarray(values, np.float64)
    k = v.shape[axis]
    if k < 2:
        raise ValueError(f"need at least two samples along axis {axis} for an interval, got {k}")
    mean = v.mean(axis=axis)
    half = t_quantile_975(k - 1) * v.std(axis=axis, ddof=1) / math.sqrt(k)
    return mean, mean - half, mean + half


@dataclasses.dataclass(frozen=True)
class LocalExponents:
    """Slopes of ``log(Ca - Ca_rest)`` against ``log r`` between neighbouring rates.

    Attributes:
      rate_lo, rate_hi: ``[P]`` the neighbouring rates of each slope (Hz).
      per_seed: ``[P, K]`` the slope of each seed.
      mean, lo, hi: ``[P]`` mean and 95 % t-interval over seeds.
    """

    rate_lo: np.ndarray
    rate_hi: np.ndarray
    per_seed: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def local_exponents(rates: np.ndarray, values: np.ndarray, *, baseline: float
                    ) -> LocalExponents:
    """``(log(v[i+1] - b) - log(v[i] - b)) / (log r[i+1] - log r[i])`` per seed, with CIs.

    Args:
      rates: ``[R]`` increasing rates > 0 (Hz).
      values: ``[R, K]`` per-seed values (e.g. time-averaged Ca2+, uM); every value must
        exceed ``baseline``.
      baseline: subtracted before the log (the resting level).

    Returns:
      The ``R - 1`` slopes between neighbours.

    Raises:
      ValueError: shapes, non-increasing or non-positive rates, a value <= baseline.
    """
    r = np.asarray(rates, np.float64)
    v = np.asarray(values, np.float64)
    if r.ndim != 1 or v.ndim != 2 or v.shape[0] != r.size or r.size < 2:
        raise ValueError(f"rates [R >= 2] and values [R, K] expected, got {r.shape}, {v.shape}")
    if np.any(r <= 0) or np.any(np.diff(r) <= 0):
        raise ValueError(f"rates must be positive and increasing, got {r.tolist()}")
    if np.any(v <= baseline):
        raise ValueError(f"every value must exceed the baseline {baseline} for the log; the "
                         f"smallest is {v.min()} (drop the rates where the curve sits at rest)")
    y = np.log(v - baseline)
    slopes = np.diff(y, axis=0) / np.diff(np.log(r))[:, None]
    mean, lo, hi = mean_ci(slopes, axis=1)
    return LocalExponents(rate_lo=r[:-1], rate_hi=r[1:], per_seed=slopes, mean=mean, lo=lo,
                          hi=hi)


@dataclasses.dataclass(frozen=True)
class RangeFit:
    """Alpha over one declared rate range.

    Attributes:
      rate_range: the declared ``(lo, hi)`` (Hz, inclusive).
      rates: the rates inside it.
      alpha: least-squares exponent of the seed-mean curve.
      lsq_ci95: the least-squares t-interval (lack of fit included; see the module docstring).
      r2: coefficient of determination in log space.
      seed_alphas: ``[K]`` the exponent fitted to each seed's curve alone.
      seed_mean, seed_ci95: mean of ``seed_alphas`` and its t-interval over seeds.
    """

    rate_range: tuple[float, float]
    rates: np.ndarray
    alpha: float
    lsq_ci95: tuple[float, float]
    r2: float
    seed_alphas: np.ndarray
    seed_mean: float
    seed_ci95: tuple[float, float]

    def contains(self, value: float) -> dict[str, bool]:
        """Whether ``value`` lies in each interval: ``{"lsq": ..., "seeds": ...}``."""
        return {"lsq": bool(self.lsq_ci95[0] <= value <= self.lsq_ci95[1]),
                "seeds": bool(self.seed_ci95[0] <= value <= self.seed_ci95[1])}


def fit_ranges(rates: np.ndarray, values: np.ndarray, *, baseline: float,
               ranges: Sequence[tuple[float, float]]) -> list[RangeFit]:
    """Fits ``values - baseline = A r^alpha`` over each range: mean curve and per seed.

    Args:
      rates: ``[R]`` rates (Hz).
      values: ``[R, K]`` per-seed values, K >= 2.
      baseline: the subtracted resting level.
      ranges: inclusive ``(lo, hi)`` rate ranges, each holding at least three rates (two
        points always fit exactly and leave no residual).

    Returns:
      One :class:`RangeFit` per range, in order.
    """
    r = np.asarray(rates, np.float64)
    v = np.asarray(values, np.float64)
    if v.ndim != 2 or v.shape[1] < 2:
        raise ValueError(f"values must be [R, K >= 2] per-seed curves, got {v.shape}")
    out = []
    for lo, hi in ranges:
        keep = (r >= lo) & (r <= hi)
        if keep.sum() < 3:
            raise ValueError(f"range ({lo}, {hi}) Hz holds {int(keep.sum())} of the rates "
                             f"{r.tolist()}; a fit with a residual needs at least three")
        fit = fit_power_law(r[keep], v[keep].mean(axis=1), baseline=baseline)
        per_seed = np.array([fit_power_law(r[keep], v[keep, k], baseline=baseline).alpha
                             for k in range(v.shape[1])])
        mean, s_lo, s_hi = mean_ci(per_seed[None, :], axis=1)
        out.append(RangeFit(rate_range=(float(lo), float(hi)), rates=r[keep], alpha=fit.alpha,
                            lsq_ci95=fit.ci95, r2=fit.r2, seed_alphas=per_seed,
                            seed_mean=float(mean[0]),
                            seed_ci95=(float(s_lo[0]), float(s_hi[0]))))
    return out
