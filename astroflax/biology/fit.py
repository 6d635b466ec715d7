"""Fitting the exponent alpha of the Ca2+-versus-rate curve, and reading it back for configs.

The form is the paper's Eq. 14 transposed to the biology: the astrocyte's response grows as a
power of the presynaptic drive, ``Ca(r) - Ca_base = A r^alpha``, fitted by ordinary least squares
in log-log space, ``log(Ca - Ca_base) = log A + alpha log r``. NumPy only (float64): the fit is a
two-parameter linear regression, not worth a SciPy dependency.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import numpy as np

# Two-sided 97.5% quantiles of Student's t for small degrees of freedom (then the normal's):
# enough for the handful of rates a sweep fits, without SciPy.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom (normal beyond 30)."""
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    return _T975[dof - 1] if dof <= len(_T975) else 1.960


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """Result of ``fit_power_law``.

    Attributes:
        alpha: fitted exponent.
        amplitude: fitted A, in the units of the values (uM) per Hz^alpha.
        alpha_se: least-squares standard error of alpha (from the residuals, so it includes the
            power law's lack of fit); NaN with only two points.
        ci95: ``(lo, hi)`` 95% t-interval for alpha from ``alpha_se``.
        baseline: the subtracted Ca_base.
        r2: coefficient of determination in log space.
        n_points: rates used.
    """

    alpha: float
    amplitude: float
    alpha_se: float
    ci95: tuple[float, float]
    baseline: float
    r2: float
    n_points: int


def fit_power_law(rates: np.ndarray, values: np.ndarray, *, baseline: float = 0.0,
                  rate_range: tuple[float, float] | None = None) -> PowerLawFit:
    """Fits ``values - baseline = A rates^alpha`` by least squares in log-log space.

    Args:
        rates: ``[R]`` rates, Hz, > 0 inside the range.
        values: ``[R]`` values (e.g. mean Ca2+, uM), or ``[R, K]`` (averaged over the last axis).
        baseline: subtracted before the log (e.g. resting Ca2+); values must exceed it.
        rate_range: inclusive ``(lo, hi)`` rates to use; all when None.

    Returns:
        The fit.

    Raises:
        ValueError: fewer than two rates in range, non-positive rates, or values <= baseline.
    """
    r = np.asarray(rates, np.float64)
    v = np.asarray(values, np.float64)
    if v.ndim == 2:
        v = v.mean(axis=1)
    if r.shape != v.shape or r.ndim != 1:
        raise ValueError(f"rates {r.shape} and values {v.shape} must be [R] (or values [R, K])")
    if rate_range is not None:
        keep = (r >= rate_range[0]) & (r <= rate_range[1])
        r, v = r[keep], v[keep]
    if r.size < 2:
        raise ValueError(f"need at least two rates to fit, got {r.size} in range {rate_range}")
    if np.any(r <= 0):
        raise ValueError(f"rates must be > 0 to fit a power law, got {r.tolist()}")
    if np.any(v <= baseline):
        raise ValueError(f"values must exceed the baseline {baseline}, got min {v.min()}")
    x, y = np.log(r), np.log(v - baseline)
    xm = x - x.mean()
    sxx = float(xm @ xm)
    alpha = float(xm @ (y - y.mean())) / sxx
    intercept = float(y.mean() - alpha * x.mean())
    resid = y - (intercept + alpha * x)
    dof = r.size - 2
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0
    if dof > 0:
        se = math.sqrt(float(resid @ resid) / dof / sxx)
        half = t_quantile_975(dof) * se
    else:
        se = half = math.nan
    return PowerLawFit(alpha=alpha, amplitude=math.exp(intercept), alpha_se=se,
                       ci95=(alpha - half, alpha + half), baseline=float(baseline), r2=r2,
                       n_points=int(r.size))


def bootstrap_alpha(rates: np.ndarray, values: np.ndarray, *, baseline: float = 0.0,
                    rate_range: tuple[float, float] | None = None, n_boot: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of alpha, resampling seeds (columns) with replacement.

    Captures only the seed-to-seed (stochastic) uncertainty of the curve, not the power law's
    lack of fit; compare with ``PowerLawFit.ci95``.

    Args:
        rates: ``[R]`` rates, Hz.
        values: ``[R, K]`` per-seed time averages.
        baseline: as in ``fit_power_law``.
        rate_range: as in ``fit_power_law``.
        n_boot: bootstrap resamples.
        seed: NumPy random seed.

    Returns:
        ``(lo, hi)``.
    """
    v = np.asarray(values, np.float64)
    if v.ndim != 2:
        raise ValueError(f"values must be [R, K] per-seed averages, got shape {v.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.shape[1], size=(n_boot, v.shape[1]))
    alphas = [fit_power_law(rates, v[:, i].mean(axis=1), baseline=baseline,
                            rate_range=rate_range).alpha for i in idx]
    lo, hi = np.percentile(alphas, [2.5, 97.5])
    return float(lo), float(hi)


def load_fitted_alpha(path: str | os.PathLike[str]) -> float:
    """Reads the fitted alpha from the JSON written by ``experiments.biology_calcium``.

    Model configs use it instead of the typed constant 0.25, e.g.
    ``config.alpha = load_fitted_alpha("runs/biology_calcium/calcium.json")``.

    Args:
        path: the JSON file (key ``"fit"`` -> ``"alpha"``).

    Returns:
        alpha, a finite float > 0.

    Raises:
        FileNotFoundError: the file does not exist (with the command that writes it).
        ValueError: the file is not JSON, lacks ``fit.alpha``, or alpha is not a positive number.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"no fitted-alpha file at {path!r}; write it with "
            "`python -m experiments.biology_calcium --out DIR` (it writes DIR/calcium.json)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            data: Any = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path!r} is not valid JSON: {e}") from e
    try:
        alpha = data["fit"]["alpha"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path!r} has no 'fit' -> 'alpha' entry") from e
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not (
            math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"{path!r}: fit.alpha must be a finite number > 0, got {alpha!r}")
    return float(alpha)
