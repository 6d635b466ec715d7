"""Intervals over seeds for the Ca2+ curve: means, local exponents, fits over declared ranges."""

import numpy as np
import pytest
from scipy import stats

from astroflax.biology.alpha import fit_ranges, local_exponents, mean_ci


def test_mean_ci_matches_scipy_t_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7))
    mean, lo, hi = mean_ci(x)
    for i in range(3):
        ref = stats.t.interval(0.95, 6, loc=x[i].mean(), scale=stats.sem(x[i]))
        assert lo[i] == pytest.approx(ref[0], abs=1e-3) and hi[i] == pytest.approx(ref[1], abs=1e-3)
    assert np.allclose(mean, x.mean(axis=1))
    with pytest.raises(ValueError, match="two samples"):
        mean_ci(x[:, :1])


def test_local_exponents_of_per_seed_power_laws_are_their_exponents():
    rates = np.array([2.0, 3.0, 5.0, 8.0])
    alphas = np.array([0.2, 0.3, 0.4])             # one exact power law per seed
    ca = 0.1 + 0.5 * rates[:, None] ** alphas[None, :]
    le = local_exponents(rates, ca, baseline=0.1)
    assert np.allclose(le.per_seed, np.broadcast_to(alphas, (3, 3)), atol=1e-12)
    assert np.allclose(le.mean, 0.3, atol=1e-12)
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)  # sd of (0.2, 0.3, 0.4) is 0.1
    assert np.allclose(le.hi - le.mean, half, rtol=1e-3)
    assert le.rate_lo.tolist() == [2, 3, 5] and le.rate_hi.tolist() == [3, 5, 8]


def test_local_exponents_of_a_bent_curve_fall_with_rate():
    rates = np.array([1.0, 2.0, 4.0, 8.0])
    ca = np.log1p(rates)[:, None] + np.zeros((1, 2))      # concave, not a power law
    le = local_exponents(rates, ca, baseline=0.0)
    # log(log(1+r)) slopes, by hand: between r and 2r, log(log(1+2r)/log(1+r)) / log 2.
    expected = [np.log(np.log1p(2 * r) / np.log1p(r)) / np.log(2) for r in (1.0, 2.0, 4.0)]
    assert np.allclose(le.mean, expected, atol=1e-12) and np.all(np.diff(le.mean) < 0)


def test_local_exponents_reject_values_at_rest():
    with pytest.raises(ValueError, match="exceed the baseline"):
        local_exponents(np.array([1.0, 2.0]), np.array([[0.1, 0.2], [0.3, 0.4]]), baseline=0.1)


def test_fit_ranges_recover_exponents_and_report_which_interval_holds_a_value():
    rates = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 20.0])
    rng = np.random.default_rng(1)
    per_seed = 0.25 + 0.01 * rng.standard_normal(6)
    ca = 0.08 + 0.4 * rates[:, None] ** per_seed[None, :]
    fits = fit_ranges(rates, ca, baseline=0.08, ranges=[(1.0, 10.0), (3.0, 20.0)])
    assert fits[0].rates.tolist() == [1, 2, 3, 5, 8, 10]
    assert np.allclose(fits[0].seed_alphas, per_seed, atol=1e-12)   # exact per-seed laws
    assert fits[0].seed_mean == pytest.approx(per_seed.mean(), abs=1e-12)
    ref = stats.t.interval(0.95, 5, loc=per_seed.mean(), scale=stats.sem(per_seed))
    assert fits[0].seed_ci95 == pytest.approx(ref, abs=1e-3)
    assert fits[0].contains(fits[0].seed_mean) == {"lsq": fits[0].lsq_ci95[0] <= fits[0].seed_mean
                                                   <= fits[0].lsq_ci95[1], "seeds": True}
    assert fits[0].contains(fits[0].alpha)["lsq"] is True
    assert fits[0].contains(1.0) == {"lsq": False, "seeds": False}
    with pytest.raises(ValueError, match="at least three"):
        fit_ranges(rates, ca, baseline=0.08, ranges=[(9.0, 20.0)])
