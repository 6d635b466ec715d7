"""Statistics of a study: means with 95 % intervals over seeds, and paired differences.

Seeds are the unit of replication: every number here is computed from one value per seed.
Two intervals are given for a mean of ``n`` values:

* Student t: ``mean ± t_{0.975, n-1} · s / sqrt(n)`` (``s`` with ddof = 1), exact for normal
  values and the headline interval.
* percentile bootstrap of the mean (``N_BOOT`` resamples of the seeds with replacement, a fixed
  generator seed, so reports are reproducible). With few seeds the bootstrap interval is too
  narrow (it cannot be wider than the range of the values); it is shown beside the t-interval
  as a check on the normality assumption, not instead of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from astroflax.biology.fit import t_quantile_975

N_BOOT = 2000
BOOT_SEED = 0


def t_interval(values: Sequence[float]) -> dict[str, Any]:
    """``{"n", "mean", "sd", "ci95": [lo, hi], "boot95": [lo, hi]}`` of ``values``.

    ``sd`` and the intervals are None for fewer than two values (no spread to estimate).
    """
    v = np.asarray([float(x) for x in values], np.float64)
    n = int(v.size)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci95": None, "boot95": None}
    mean = float(v.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "ci95": None, "boot95": None}
    sd = float(v.std(ddof=1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    rng = np.random.default_rng(BOOT_SEED)
    boots = v[rng.integers(0, n, size=(N_BOOT, n))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"n": n, "mean": mean, "sd": sd, "ci95": [mean - half, mean + half],
            "boot95": [float(lo), float(hi)]}


def paired_difference(arm: Mapping[int, float], reference: Mapping[int, float]
                      ) -> dict[str, Any]:
    """Interval of ``arm[s] - reference[s]`` over the seeds both have (paired by seed).

    Pairing by seed removes what two runs with one seed share (data order, dropout draws);
    the result also lists the seeds used.
    """
    seeds = sorted(set(arm) & set(reference))
    out = t_interval([arm[s] - reference[s] for s in seeds])
    out["seeds"] = seeds
    return out


def epochs_to_target(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """Epoch of the first ``(epoch, accuracy)`` evaluation at or above ``target``, else None."""
    for epoch, value in curve:
        if value is not None and value >= target:
            return float(epoch)
    return None


def aggregate_arm(runs: Sequence[Mapping[str, Any]], targets: Sequence[float]
                  ) -> dict[str, Any]:
    """Per-arm aggregates of its runs (one per seed).

    Args:
      runs: run records with ``final``, ``best`` (the metric's value), ``curve``
        (``[[epoch, value], ...]``), ``extra`` (split -> value) and ``num_params``.
      targets: accuracy thresholds for epochs-to-target.

    Returns:
      ``final`` / ``best`` / ``extra[split]`` intervals (:func:`t_interval`), and for each
      target ``{"reached": k, "of": n, "epochs": t_interval over the k seeds that reached it}``.
      Seeds that never reach a target are counted, not imputed.
    """
    out: dict[str, Any] = {
        "seeds": [r["seed"] for r in runs],
        "final": t_interval([r["final"] for r in runs]),
        "best": t_interval([r["best"] for r in runs]),
        "num_params": runs[0]["num_params"] if runs else None,
        "epochs_to_target": {},
    }
    splits = sorted({k for r in runs for k in r.get("extra", {})})
    out["extra"] = {s: t_interval([r["extra"][s] for r in runs if s in r.get("extra", {})])
                    for s in splits}
    for target in targets:
        reached = [e for e in (epochs_to_target(r["curve"], target) for r in runs)
                   if e is not None]
        out["epochs_to_target"][f"{target:g}"] = {"reached": len(reached), "of": len(runs),
                                                   "epochs": t_interval(reached)}
    return out


def mean_curve(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Mean and t-interval of the eval curve at each epoch every run evaluated."""
    common = sorted(set.intersection(*[{round(e, 9) for e, _ in r["curve"]} for r in runs]))
    epochs, mean, lo, hi = [], [], [], []
    for e in common:
        vals = [v for r in runs for ep, v in r["curve"] if round(ep, 9) == e]
        t = t_interval(vals)
        epochs.append(e)
        mean.append(t["mean"])
        lo.append(t["ci95"][0] if t["ci95"] else t["mean"])
        hi.append(t["ci95"][1] if t["ci95"] else t["mean"])
    return {"epoch": epochs, "mean": mean, "lo": lo, "hi": hi}
