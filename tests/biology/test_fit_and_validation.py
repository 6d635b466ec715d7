"""The alpha fit on synthetic data, the experiment's JSON round trip, and parameter validation."""

import dataclasses
import json

import numpy as np
import pytest
from scipy import stats

from astroflax.biology import ANParams, bootstrap_alpha, fit_power_law, load_fitted_alpha, simulate
from astroflax.biology.fit import t_quantile_975


@pytest.mark.parametrize("alpha", [0.25, 0.6])
def test_fit_recovers_the_exponent_of_noiseless_synthetic_data(alpha):
    rates = np.arange(1.0, 11.0)
    ca = 0.08 + 0.3 * rates**alpha
    fit = fit_power_law(rates, ca, baseline=0.08)
    assert fit.alpha == pytest.approx(alpha, abs=1e-12)
    assert fit.amplitude == pytest.approx(0.3, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_fit_interval_covers_the_true_exponent_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    rates = np.arange(1.0, 11.0)
    covered, alphas = 0, []
    for _ in range(400):
        ca = 0.5 * rates**0.25 * np.exp(0.05 * rng.standard_normal(rates.size))
        fit = fit_power_law(rates, ca)
        covered += fit.ci95[0] <= 0.25 <= fit.ci95[1]
        alphas.append(fit.alpha)
    assert abs(np.mean(alphas) - 0.25) < 0.005          # unbiased in log space
    assert 0.92 <= covered / 400 <= 0.98                # 95% coverage (binomial sd ~1.1%)


def test_bootstrap_over_seeds_brackets_the_per_seed_exponents():
    rng = np.random.default_rng(1)
    rates = np.arange(1.0, 11.0)
    per_seed_alpha = 0.3 + 0.02 * rng.standard_normal(8)
    ca = 0.1 + 0.2 * rates[:, None] ** per_seed_alpha[None, :]
    lo, hi = bootstrap_alpha(rates, ca, baseline=0.1, n_boot=500)
    assert lo < fit_power_law(rates, ca, baseline=0.1).alpha < hi
    assert hi - lo < 4 * 0.02


def test_fit_range_and_bad_inputs():
    rates = np.array([0.5, 1.0, 2.0, 4.0, 20.0])
    fit = fit_power_law(rates, 2 * rates**0.5, rate_range=(1.0, 4.0))
    assert fit.n_points == 3 and fit.alpha == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="baseline"):
        fit_power_law(rates, rates, baseline=1.0)
    with pytest.raises(ValueError, match="at least two"):
        fit_power_law(rates, rates, rate_range=(3.0, 5.0))


def test_t_quantiles_match_scipy():
    for dof in (1, 2, 5, 7, 13, 30):
        assert t_quantile_975(dof) == pytest.approx(stats.t.ppf(0.975, dof), abs=1e-3)
    assert t_quantile_975(500) == pytest.approx(stats.norm.ppf(0.975), abs=1e-2)


def test_experiment_writes_json_and_png_and_configs_can_load_its_alpha(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from experiments.biology_calcium import main

    main(["--out", str(tmp_path), "--quick"])
    data = json.loads((tmp_path / "calcium.json").read_text())
    alpha = load_fitted_alpha(tmp_path / "calcium.json")
    assert alpha == data["fit"]["alpha"]
    assert data["paper_alpha"] == 0.25
    lo, hi = data["fit"]["ci95"]
    assert lo < alpha < hi and 0.1 < alpha < 0.5
    assert len(data["curve"]["ca_um"]["mean"]) == len(data["curve"]["rates_hz"])
    assert (tmp_path / "calcium.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "alpha =" in capsys.readouterr().out


def test_load_fitted_alpha_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"experiments\.biology_calcium"):
        load_fitted_alpha(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_fitted_alpha(bad)
    bad.write_text(json.dumps({"curve": {}}))
    with pytest.raises(ValueError, match="'fit' -> 'alpha'"):
        load_fitted_alpha(bad)
    for value in (-0.25, "0.25", None, float("nan")):
        bad.write_text(json.dumps({"fit": {"alpha": value}}))
        with pytest.raises(ValueError, match=r"fit\.alpha"):
            load_fitted_alpha(bad)


@pytest.mark.parametrize(("field", "value"), [
    ("dt", 0.0), ("dt", -1e-3), ("dt", 2e-3), ("pr0", 1.5), ("pr0", -0.1),
    ("tau_mem_s", 0.0), ("h_init", 2.0), ("k_ag", 5.0), ("n_neurons", 0),
    ("glu_release", "sometimes"), ("tau_esp_s", float("inf")),
])
def test_bad_params_raise_value_error_naming_the_field(field, value):
    p = dataclasses.replace(ANParams(), **{field: value})
    with pytest.raises(ValueError, match=rf"ANParams\.{field}\b"):
        simulate([1.0], [0], p, duration_s=1.0)


@pytest.mark.parametrize("rates", [[-1.0], [1.0, float("nan")], [2000.0]])
def test_bad_rates_raise_value_error_naming_rates(rates):
    with pytest.raises(ValueError, match="rates"):
        simulate(rates, [0], duration_s=1.0)


def test_bad_seeds_raise_value_error_naming_seeds():
    with pytest.raises(ValueError, match="seeds"):
        simulate([1.0], [-1], duration_s=1.0)
    with pytest.raises(ValueError, match="seeds"):
        simulate([1.0], [0.5], duration_s=1.0)


def test_bad_times_raise_value_error():
    with pytest.raises(ValueError, match="duration_s"):
        simulate([1.0], [0], duration_s=1.5, record_every_s=1.0)
    with pytest.raises(ValueError, match="record_every_s"):
        simulate([1.0], [0], duration_s=1.0, record_every_s=1e-4)
