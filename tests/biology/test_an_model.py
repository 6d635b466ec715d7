"""The AN model: the lab's scheme at 1 ms, convergence in dt, seeds, the Fig. 3 shape, feedback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroflax.biology import ANParams, simulate
from astroflax.biology.an_model import draw_uniforms


def _mean_ca(trace, transient_blocks):
    """Post-transient time average per (rate, seed), float64: ``[R, K]``."""
    return np.asarray(trace.ca, np.float64)[..., transient_blocks:].mean(axis=-1)


def _lab_reference(u, rate, latched):
    """The lab's MATLAB loop (Astromorphic_Self_Repair, self_repair_single_simulation), transcribed.

    Differences, all deliberate: a spike and its release are decided by one uniform,
    ``u < r dt PR`` (the same probability as the lab's two draws, and the draws ``simulate``
    uses); both neurons have the 2-step refractory of the lab's N1 (its N2 has 1 step,
    docs/model.md §6 says 2 ms); no faulty synapses; with ``latched=False`` glutamate needs Ca
    above threshold at the release step (the reading of docs/model.md §6) instead of the lab's
    "ever crossed".
    """
    dt, ip3s, r_ip3, r_glu, r_ag = 0.001, 0.16, 0.5, 10.0, 0.8
    tau_ip3, tau_ag, tau_glu, tau_esp = 7.0, 10.0, 0.1, 40.0
    a2, r_c, r_l, c0, c1, v_er, k_er = 0.2, 6.0, 0.11, 2.0, 0.185, 0.8, 0.1
    d1, d2, d3, d5, m_esp, ca_thr, k_ag = 0.13, 1.049, 0.9434, 0.08234, 55e3, 0.3, -1000.0
    vth, rm, tau_mem, i_inj = 9.0, 1.2, 0.06, 6650.0
    ca, h, ip3, glu, esp = 0.071006, 0.7791, 0.16, 0.0, 0.0
    ag, v, pr = np.zeros(2), np.zeros(2), np.full(2, 0.3)
    t_sp, t_ca, reached, last_release = [-10, -10], -1, False, -10**9
    cas, releases = [], 0
    for t in range(u.shape[0]):
        n_rel = (u[t] < rate * dt * pr[:, None]).sum(axis=1)
        v_new = np.empty(2)
        for i in range(2):
            if t in (t_sp[i], t_sp[i] + 1):
                v_new[i] = 0.0
            else:
                v_new[i] = v[i] + (-v[i] + rm * i_inj * n_rel[i]) * (dt / tau_mem)
        ag_new = np.array([ag[i] + (-ag[i] / tau_ag + (r_ag if t == t_sp[i] else 0.0)) * dt
                           for i in range(2)])
        for i in range(2):
            if v_new[i] >= vth:
                t_sp[i] = t + 1
        ip3_new = ip3 + ((ip3s - ip3) / tau_ip3 + r_ip3 * ag[0] + r_ip3 * ag[1]) * dt
        m_inf, n_inf = ip3 / (ip3 + d1), ca / (ca + d5)
        q2 = d2 * (ip3 + d1) / (ip3 + d3)
        h_inf, tau_h = q2 / (q2 + ca), 1 / (a2 * (q2 + ca))
        j_chan = r_c * (m_inf * n_inf * h) ** 3 * (c0 - (1 + c1) * ca)
        j_leak = r_l * (c0 - (1 + c1) * ca)
        j_pump = v_er * ca**2 / (k_er**2 + ca**2)
        ca_new = ca + (j_chan + j_leak - j_pump) * dt
        h_new = h + (h_inf - h) / tau_h * dt
        if not reached and ca_new >= ca_thr:
            t_ca, reached = t, True
        if latched:
            release = reached and t > t_ca + 300
            if release:
                t_ca = t
        else:
            release = ca_new >= ca_thr and t > last_release + 300
            if release:
                last_release = t
        releases += release
        glu_new = glu + (-glu / tau_glu + (r_glu if release else 0.0)) * dt
        esp_new = esp + ((-esp + m_esp * glu) / tau_esp) * dt
        pr = np.clip(0.3 + 0.3 * (ag_new * k_ag + esp_new) / 100, 0.0, 1.0)
        ca, h, ip3, glu, esp, ag, v = ca_new, h_new, ip3_new, glu_new, esp_new, ag_new, v_new
        cas.append(ca)
    return np.asarray(cas), releases


@pytest.mark.parametrize("mode", ["latched", "threshold"])
def test_at_1ms_the_scan_is_the_labs_euler_scheme_step_for_step(mode):
    p, rate, seed, seconds = ANParams(glu_release=mode), 10.0, 7, 12.0
    trace = simulate([rate], [seed], p, duration_s=seconds, record_every_s=p.dt,
                     dtype=jnp.float64)
    n = p.steps(seconds)
    u = jax.vmap(lambda b: draw_uniforms(jax.random.key(seed), b, (1, 2, 10)))(
        jnp.arange(n, dtype=jnp.int32))
    ref_ca, ref_releases = _lab_reference(np.asarray(u[:, 0], np.float64), rate,
                                          latched=mode == "latched")
    assert ref_releases >= 5, "test premise: the glutamate pathway fires in this window"
    np.testing.assert_allclose(np.asarray(trace.ca[0, 0]), ref_ca, rtol=1e-10)
    assert round(float(np.asarray(trace.glu_rate_hz[0, 0]).sum() * p.dt)) == ref_releases


def test_halving_dt_changes_mean_ca_at_5hz_by_under_1_percent():
    seeds, seconds, transient = np.arange(4), 300.0, 100
    coarse = _mean_ca(simulate([5.0], seeds, ANParams(dt=1e-3), duration_s=seconds), transient)
    fine = _mean_ca(simulate([5.0], seeds, ANParams(dt=5e-4), duration_s=seconds), transient)
    # Different dt means different random streams: the seeds' spread must be far below 1% for
    # the comparison to mean anything (it is ~0.1% per seed over 200 s).
    se = np.hypot(coarse.std(ddof=1), fine.std(ddof=1)) / np.sqrt(len(seeds)) / coarse.mean()
    assert se < 0.002, f"statistical error {se:.2%} too large for a 1% test"
    change = abs(fine.mean() / coarse.mean() - 1)
    assert change < 0.01, f"halving dt changed mean Ca by {change:.2%}"


def test_events_shrinking_with_dt_would_not_converge():
    # The counterfactual that makes the previous test meaningful: pulses lasting one step
    # (the lab's code read literally at another dt) halve 2-AG and glutamate per event.
    seeds, seconds, transient = np.arange(2), 200.0, 100
    base = _mean_ca(simulate([5.0], seeds, ANParams(), duration_s=seconds), transient)
    naive = _mean_ca(simulate([5.0], seeds, ANParams(dt=5e-4, event_duration=5e-4),
                              duration_s=seconds), transient)
    assert abs(naive.mean() / base.mean() - 1) > 0.1


def test_same_seed_same_trace_different_seeds_differ_and_batch_does_not_matter():
    p = ANParams()
    kw = dict(duration_s=20.0, record_every_s=0.01)
    a = simulate([5.0], [3], p, **kw)
    b = simulate([5.0], [3], p, **kw)
    batch = simulate([2.0, 5.0], [1, 3], p, **kw)
    for field in a._fields:
        np.testing.assert_array_equal(np.asarray(getattr(a, field)),
                                      np.asarray(getattr(b, field)), err_msg=field)
        np.testing.assert_array_equal(np.asarray(getattr(a, field))[0, 0],
                                      np.asarray(getattr(batch, field))[1, 1], err_msg=field)
    other = np.asarray(batch.post_rate_hz)[1, 0]
    assert np.mean(other != np.asarray(a.post_rate_hz)[0, 0]) > 0.1
    assert not np.array_equal(np.asarray(batch.ca)[1, 0], np.asarray(a.ca)[0, 0])


def test_float32_state_matches_float64_on_the_same_draws():
    seeds = np.arange(2)
    f32 = _mean_ca(simulate([5.0], seeds, duration_s=200.0), 100)
    f64 = _mean_ca(simulate([5.0], seeds, duration_s=200.0, dtype=jnp.float64), 100)
    np.testing.assert_allclose(f32, f64, rtol=1e-4)


@pytest.fixture(scope="module")
def sweeps():
    """Mean Ca on a fine 1-10 Hz grid, with and without the feedback pathway."""
    rates = np.array([1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    out = {"rates": rates}
    for name, p in [("on", ANParams()), ("off", ANParams().without_feedback())]:
        trace = simulate(rates, np.arange(3), p, duration_s=300.0)
        out[name] = {f: np.asarray(getattr(trace, f), np.float64)[..., 100:].mean(axis=(-1, -2))
                     for f in trace._fields}
    return out


def test_paper_params_mean_ca_rises_with_rate_and_is_concave_on_the_1_to_10_hz_grid(sweeps):
    rates, ca = sweeps["rates"], sweeps["on"]["ca"]
    integer = np.isin(rates, np.arange(1.0, 11.0))  # the paper's Fig. 3 grid
    assert np.all(np.diff(ca) > 0), ca
    second = np.diff(ca[integer], n=2)
    assert np.all(second < 0), f"not concave on 1..10 Hz: second differences {second}"


def test_feedback_creates_a_switch_off_it_pr_is_constant_and_ca_is_smooth(sweeps):
    rates, on, off = sweeps["rates"], sweeps["on"], sweeps["off"]
    p = ANParams()
    # Off: PR stays at PR(0), and each neuron fires on every release it is not refractory for:
    # per step P(>=1 release) = q, then 2 dead steps -> rate q / (dt (1 + 2q)).
    np.testing.assert_allclose(off["pr"], p.pr0, rtol=1e-6)
    q = 1 - (1 - rates * p.dt * p.pr0) ** p.synapses_per_neuron
    predicted = q / (p.dt * (1 + 2 * q))
    n_spikes = predicted * 200.0 * 3 * p.n_neurons  # averaged seconds x seeds x neurons
    assert np.all(np.abs(off["post_rate_hz"] / predicted - 1) < 4 / np.sqrt(n_spikes))
    # Off: Ca rises smoothly and concavely already on the fine grid (Li–Rinzel saturation).
    assert np.all(np.diff(off["ca"]) > 0)
    assert np.all(np.diff(off["ca"]) / np.diff(rates) > 0)
    slopes_off = np.diff(off["ca"]) / np.diff(rates)
    assert np.all(np.diff(slopes_off) < 0), slopes_off
    # On: below the switch DSE alone depresses PR below PR(0) and Ca sits below the open loop;
    # between 1.5 and 2 Hz the astrocyte turns on (glutamate -> eSP lifts PR): a jump, steeper
    # than the slope just below it, and above it more Ca than the open loop.
    assert on["pr"][0] < p.pr0 and on["glu_rate_hz"][0] == 0 and on["ca"][0] < off["ca"][0]
    slopes_on = np.diff(on["ca"]) / np.diff(rates)
    assert slopes_on[1] > 3 * slopes_on[0], slopes_on
    assert on["glu_rate_hz"][2] > 2.5 and on["pr"][2] > p.pr0
    assert np.all(on["ca"][2:6] > off["ca"][2:6])
