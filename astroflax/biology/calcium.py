"""The Ca2+-versus-rate experiment (the paper's Fig. 3): sweep, summarise, fit alpha, report.

``experiments/biology_calcium.py`` is the command-line entry point; everything it does is here.

The fit (stated form and range). ``Ca(r) - Ca_rest = A r^alpha``: a power law on the rate-driven
part of the time-averaged Ca2+ above the resting level Ca_rest (the r = 0 steady state),
least squares in log-log space over the rates of the paper's range, 1-10 Hz, *on which the
astrocyte is engaged* (every seed releases glutamate in at least 90% of the post-transient
seconds). Why the last condition: with the paper's parameters the feedback loop is bistable;
below ~1.6 Hz Ca2+ never reaches the glutamate threshold, above ~1.8 Hz it stays above it and
eSP lifts PR, and between the two seeds switch at random times. The power law describes the
engaged branch; a single power law across the switch does not fit (r^2 ~ 0.8), and that fit is
reported beside the primary one rather than hidden. The interval is the 95% t-interval from the
least-squares standard error (it contains the power law's lack of fit, the dominant uncertainty);
the seeds' bootstrap interval (stochastic uncertainty only) is reported too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from astroflax.biology.an_model import ANTrace, simulate
from astroflax.biology.fit import bootstrap_alpha, fit_power_law
from astroflax.biology.params import ANParams

PAPER_ALPHA = 0.25
PAPER_RANGE_HZ = (1.0, 10.0)
# The paper's 1-10 Hz grid, plus a wider margin on both sides.
DEFAULT_RATES_HZ = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 15.0, 20.0)
ENGAGED_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class CalciumCurve:
    """Post-transient time averages per (rate, seed); arrays are ``[R, K]`` unless stated.

    Attributes:
        rates_hz: ``[R]`` presynaptic rates.
        seeds: ``[K]`` seeds.
        ca_um: time-averaged Ca2+.
        ip3_um: time-averaged IP3.
        pr: time-averaged release probability.
        post_rate_hz: postsynaptic firing rate per neuron.
        glu_rate_hz: astrocytic glutamate releases per second.
        engaged: ``[R]`` bool, every seed released glutamate in >= 90% of the averaged seconds.
        ca_rest_um: Ca2+ at r = 0 (deterministic steady state of the same simulator).
        duration_s: simulated time per run.
        transient_s: discarded initial time.
    """

    rates_hz: np.ndarray
    seeds: np.ndarray
    ca_um: np.ndarray
    ip3_um: np.ndarray
    pr: np.ndarray
    post_rate_hz: np.ndarray
    glu_rate_hz: np.ndarray
    engaged: np.ndarray
    ca_rest_um: float
    duration_s: float
    transient_s: float


def resting_calcium(p: ANParams, *, seconds: float = 200.0,
                    dtype: jnp.dtype = jnp.float32) -> float:
    """Ca2+ at zero presynaptic rate (uM): the mean of the last 10% of a deterministic run.

    In float32 the slow gate h stalls within ~6e-4 (relative) of its target (see
    ``an_model``), so this is ~5e-4 above the exact fixed point; float64 reaches it to 1e-7.
    """
    trace = simulate([0.0], [0], p, duration_s=seconds, record_every_s=seconds / 10,
                     dtype=dtype)
    return float(np.asarray(trace.ca, np.float64)[0, 0, -1])


def summarise(trace: ANTrace, rates_hz: np.ndarray, seeds: np.ndarray, *, ca_rest_um: float,
              record_every_s: float, transient_s: float) -> CalciumCurve:
    """Time-averages a ``simulate`` trace after the transient (in float64).

    Args:
        trace: ``simulate(rates_hz, seeds, ...)`` output, fields ``[R, K, n_blocks]``.
        rates_hz: ``[R]`` rates of the trace.
        seeds: ``[K]`` seeds of the trace.
        ca_rest_um: resting Ca2+ (``resting_calcium``).
        record_every_s: the trace's block length, s.
        transient_s: time to discard, s (a multiple of ``record_every_s``).

    Returns:
        The curve.
    """
    skip = round(transient_s / record_every_s)
    n_blocks = trace.ca.shape[-1]
    if not 0 <= skip < n_blocks:
        raise ValueError(f"transient_s={transient_s} must be shorter than the simulated time"
                         f" ({n_blocks * record_every_s} s)")

    def avg(x: Any) -> np.ndarray:
        return np.asarray(x, np.float64)[..., skip:].mean(axis=-1)

    releasing = (np.asarray(trace.glu_rate_hz)[..., skip:] > 0).mean(axis=-1)
    return CalciumCurve(
        rates_hz=np.asarray(rates_hz, np.float64), seeds=np.asarray(seeds),
        ca_um=avg(trace.ca), ip3_um=avg(trace.ip3), pr=avg(trace.pr),
        post_rate_hz=avg(trace.post_rate_hz), glu_rate_hz=avg(trace.glu_rate_hz),
        engaged=np.all(releasing >= ENGAGED_FRACTION, axis=1), ca_rest_um=float(ca_rest_um),
        duration_s=float(n_blocks * record_every_s), transient_s=float(transient_s),
    )


def measure_curve(rates_hz: np.ndarray | list[float] = DEFAULT_RATES_HZ,
                  seeds: np.ndarray | list[int] = tuple(range(8)), p: ANParams | None = None, *,
                  duration_s: float = 400.0, transient_s: float = 100.0,
                  record_every_s: float = 1.0) -> CalciumCurve:
    """Simulates every (rate, seed) and summarises: the data of the paper's Fig. 3.

    Args:
        rates_hz: ``[R]`` presynaptic rates, Hz.
        seeds: ``[K]`` seeds.
        p: model parameters (default ``ANParams()``).
        duration_s: simulated time per run, s.
        transient_s: discarded initial time, s. 100 s covers the slowest time constant
            (eSP, 40 s) and the engaged branch's switch-on (<= 70 s at 2 Hz).
        record_every_s: averaging block, s.

    Returns:
        The curve.
    """
    p = p or ANParams()
    rates_hz, seeds = np.asarray(rates_hz, np.float64), np.asarray(seeds)
    trace = simulate(rates_hz, seeds, p, duration_s=duration_s, record_every_s=record_every_s)
    return summarise(trace, rates_hz, seeds, ca_rest_um=resting_calcium(p),
                     record_every_s=record_every_s, transient_s=transient_s)


def fit_range_rates(curve: CalciumCurve,
                    rate_range: tuple[float, float] = PAPER_RANGE_HZ) -> np.ndarray:
    """The rates the primary fit uses: engaged rates in ``rate_range``; all of them if < 3."""
    in_range = (curve.rates_hz >= rate_range[0]) & (curve.rates_hz <= rate_range[1])
    chosen = in_range & curve.engaged
    return curve.rates_hz[chosen if chosen.sum() >= 3 else in_range]


def _fit_entry(curve: CalciumCurve, rates: np.ndarray, *, baseline: float, form: str,
               bootstrap: bool) -> dict[str, Any]:
    keep = np.isin(curve.rates_hz, rates)
    fit = fit_power_law(curve.rates_hz[keep], curve.ca_um[keep], baseline=baseline)
    entry: dict[str, Any] = {
        "form": form, "rates_hz": rates.tolist(), "alpha": fit.alpha,
        "ci95": list(fit.ci95), "alpha_se": fit.alpha_se, "amplitude": fit.amplitude,
        "baseline_um": fit.baseline, "r2": fit.r2,
        "paper_alpha_in_ci95": bool(fit.ci95[0] <= PAPER_ALPHA <= fit.ci95[1]),
    }
    if bootstrap and curve.ca_um.shape[1] > 1:
        entry["bootstrap_ci95_over_seeds"] = list(bootstrap_alpha(
            curve.rates_hz[keep], curve.ca_um[keep], baseline=baseline))
    return entry


def fit_alpha(curve: CalciumCurve) -> dict[str, Any]:
    """The primary fit (see the module docstring) and the alternatives, as JSON-ready dicts.

    Args:
        curve: a measured curve.

    Returns:
        ``{"fit": {...}, "alternatives": [...]}``; ``fit["alpha"]`` is what configs load.
    """
    engaged = fit_range_rates(curve)
    lo, hi = PAPER_RANGE_HZ
    all_in = curve.rates_hz[(curve.rates_hz >= lo) & (curve.rates_hz <= hi)]
    above = "Ca(r) - Ca_rest = A r^alpha, least squares in log-log space"
    pure = "Ca(r) = A r^alpha (no baseline, Eq. 14's g = z^alpha), least squares in log-log"
    primary = _fit_entry(curve, engaged, baseline=curve.ca_rest_um, form=above, bootstrap=True)
    primary["range_rule"] = (f"rates in [{lo:g}, {hi:g}] Hz on the engaged branch (every seed"
                             f" releases glutamate in >= {ENGAGED_FRACTION:.0%} of the seconds)")
    alternatives = [
        _fit_entry(curve, engaged, baseline=0.0, form=pure, bootstrap=False),
        _fit_entry(curve, all_in, baseline=curve.ca_rest_um, form=above + ", all of 1-10 Hz",
                   bootstrap=False),
        _fit_entry(curve, all_in, baseline=0.0, form=pure + ", all of 1-10 Hz", bootstrap=False),
    ]
    return {"fit": primary, "alternatives": alternatives}


def curve_to_json(curve: CalciumCurve, fits: dict[str, Any], p: ANParams,
                  **extra: Any) -> dict[str, Any]:
    """Everything a reader needs to redraw Fig. 3 and to trust (or not) the fitted alpha."""
    def stat(x: np.ndarray) -> dict[str, list[float]]:
        return {"mean": x.mean(axis=1).tolist(), "std_over_seeds": x.std(axis=1).tolist()}

    return {
        "paper_alpha": PAPER_ALPHA,
        **fits,
        "curve": {
            "rates_hz": curve.rates_hz.tolist(), "ca_rest_um": curve.ca_rest_um,
            "ca_um": stat(curve.ca_um), "ca_um_per_seed": curve.ca_um.tolist(),
            "ip3_um": stat(curve.ip3_um), "pr": stat(curve.pr),
            "post_rate_hz": stat(curve.post_rate_hz), "glu_rate_hz": stat(curve.glu_rate_hz),
            "engaged": curve.engaged.tolist(),
        },
        "simulation": {"seeds": curve.seeds.tolist(), "duration_s": curve.duration_s,
                       "transient_s": curve.transient_s, "params": dataclasses.asdict(p)},
        **extra,
    }


def plot_curve(curve: CalciumCurve, fit: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Writes a PNG in the spirit of the paper's Fig. 3: the curve, the seeds, the fit.

    Left: mean Ca2+ against rate (seeds as dots, +-1 std bars), the fitted power law, and the
    paper's exponent through the same mid-range point. Right: the same in log-log above rest.
    Needs matplotlib (``pip install astroflax[biology]``).
    """
    import matplotlib  # optional dependency: imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, ca = curve.rates_hz, curve.ca_um
    mean, std = ca.mean(axis=1), ca.std(axis=1)
    base, alpha, amp = fit["baseline_um"], fit["alpha"], fit["amplitude"]
    fr = np.asarray(fit["rates_hz"])
    grid = np.geomspace(r.min(), r.max(), 200)
    inside = (grid >= fr.min()) & (grid <= fr.max())
    # The paper's alpha, anchored at the geometric middle of the fitted range.
    mid = float(np.sqrt(fr.min() * fr.max()))
    paper = base + amp * mid ** alpha * (grid / mid) ** PAPER_ALPHA
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, loglog in zip(axes, (False, True), strict=True):
        off = base if loglog else 0.0
        for k in range(ca.shape[1]):
            ax.plot(r, ca[:, k] - off, ".", color="0.6", ms=3, label="seeds" if k == 0 else None)
        ax.errorbar(r, mean - off, yerr=std, fmt="o-", color="k", ms=4, lw=1, capsize=2,
                    label="mean ± std over seeds")
        silent = ~curve.engaged
        if silent.any():
            ax.plot(r[silent], mean[silent] - off, "o", color="w", mec="k", ms=5, zorder=5,
                    label="astrocyte not engaged (fit excludes)")
        ax.plot(grid, base + amp * grid ** alpha - off, "--", color="tab:blue", lw=1)
        lo, hi = fit["ci95"]
        ax.plot(grid[inside], (base + amp * grid ** alpha - off)[inside], color="tab:blue",
                lw=2, label=f"fit: alpha = {alpha:.3f} [{lo:.3f}, {hi:.3f}]")
        ax.plot(grid, paper - off, ":", color="tab:red", label=f"alpha = {PAPER_ALPHA} (paper)")
        ax.set_xlabel("presynaptic rate r (Hz)")
        if loglog:
            ax.set(xscale="log", yscale="log", ylabel="Ca - Ca_rest (uM)",
                   title="log-log, above rest")
        else:
            ax.set(ylabel="time-averaged Ca2+ (uM)", title="astrocyte Ca2+ vs rate (cf. Fig. 3)")
            ax.axhline(curve.ca_rest_um, color="0.8", lw=1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)
    plt.close(fig)


def run_experiment(out_dir: str | os.PathLike[str], *, quick: bool = False,
                   seeds: int | None = None, p: ANParams | None = None) -> dict[str, Any]:
    """The whole experiment: sweep, fit, write ``calcium.json`` (and ``calcium.png``).

    Args:
        out_dir: output folder (created).
        quick: 3 seeds x 150 s (50 s transient) instead of 8 seeds x 400 s (100 s transient).
        seeds: number of seeds, overriding the default of the mode.
        p: model parameters (default ``ANParams()``).

    Returns:
        The JSON dict written.
    """
    p = p or ANParams()
    n_seeds = seeds or (3 if quick else 8)
    duration, transient = (150.0, 50.0) if quick else (400.0, 100.0)
    start = time.perf_counter()
    curve = measure_curve(DEFAULT_RATES_HZ, np.arange(n_seeds), p, duration_s=duration,
                          transient_s=transient)
    wall = time.perf_counter() - start
    fits = fit_alpha(curve)
    result = curve_to_json(curve, fits, p, wall_time_s_including_compile=wall, quick=quick)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "calcium.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    try:
        plot_curve(curve, fits["fit"], os.path.join(out_dir, "calcium.png"))
    except ImportError:
        print("matplotlib is not installed (pip install astroflax[biology]); no PNG written")
    return result
