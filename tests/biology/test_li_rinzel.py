"""Li–Rinzel sub-model against fixed points found independently by root-finding (SciPy)."""

import numpy as np
import pytest
from scipy.optimize import brentq

from astroflax.biology import li_rinzel
from astroflax.biology.params import ANParams

# The constants of docs/model.md §6, retyped so the reference shares no code with the model.
RC, RL, C0, C1, VER, KER = 6.0, 0.11, 2.0, 0.185, 0.8, 0.1
D1, D2, D3, D5, A2 = 0.13, 1.049, 0.9434, 0.08234, 0.2


def _h_inf(ca, ip3):
    q2 = D2 * (ip3 + D1) / (ip3 + D3)
    return q2 / (q2 + ca)


def _net_flux(ca, ip3):
    """J_chan + J_leak - J_pump with h = h_inf(Ca): zero at a fixed point."""
    grad = C0 - (1 + C1) * ca
    m, n = ip3 / (ip3 + D1), ca / (ca + D5)
    return (RC * (m * n * _h_inf(ca, ip3)) ** 3 * grad + RL * grad
            - VER * ca**2 / (KER**2 + ca**2))


def _fixed_point(ip3):
    grid = np.linspace(1e-6, C0 / (1 + C1) - 1e-6, 4001)
    vals = _net_flux(grid, ip3)
    roots = [brentq(_net_flux, a, b, args=(ip3,), xtol=1e-14)
             for a, b, fa, fb in zip(grid[:-1], grid[1:], vals[:-1], vals[1:], strict=True)
             if fa * fb < 0]
    assert len(roots) == 1, f"expected a unique fixed point at IP3={ip3}, got {roots}"
    return roots[0]


def _rhs(ca, h, ip3):
    q2 = D2 * (ip3 + D1) / (ip3 + D3)
    return np.array([_net_flux(ca, ip3) + RC * (ip3 / (ip3 + D1) * ca / (ca + D5)) ** 3
                     * (h**3 - _h_inf(ca, ip3) ** 3) * (C0 - (1 + C1) * ca),
                     A2 * (q2 - (q2 + ca) * h)])


def _max_real_eigenvalue(ip3):
    """Stability of the fixed point: largest real part of the Jacobian's eigenvalues (1/s)."""
    ca, eps = _fixed_point(ip3), 1e-7
    h = _h_inf(ca, ip3)
    jac = np.stack([(_rhs(ca + eps, h, ip3) - _rhs(ca - eps, h, ip3)) / (2 * eps),
                    (_rhs(ca, h + eps, ip3) - _rhs(ca, h - eps, ip3)) / (2 * eps)], axis=1)
    return float(np.linalg.eigvals(jac).real.max())


@pytest.mark.parametrize("ip3", [0.16, 0.3, 0.8, 2.0])
def test_constant_ip3_settles_to_root_of_jchan_plus_jleak_equals_jpump(ip3):
    import jax.numpy as jnp

    p = ANParams()
    ca_star = _fixed_point(ip3)
    assert _max_real_eigenvalue(ip3) < -0.05, "test premise: a stable fixed point"
    # From the lab's initial condition and from far above, both must converge.
    ca0 = jnp.asarray([p.ca_init_um, 1.0], jnp.float64)
    h0 = jnp.asarray([p.h_init, 0.2], jnp.float64)
    ca, h = li_rinzel.relax(ca0, h0, jnp.asarray(ip3, jnp.float64), p, seconds=400.0)
    np.testing.assert_allclose(np.asarray(ca), ca_star, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(h), _h_inf(ca_star, ip3), rtol=1e-6)


def test_fluxes_match_hand_computed_values():
    import jax.numpy as jnp

    ca, h, ip3 = 0.2, 0.6, 0.4
    j_chan, j_leak, j_pump = li_rinzel.fluxes(jnp.asarray(ca, jnp.float64), h, ip3, ANParams())
    grad = 2.0 - 1.185 * 0.2
    assert float(j_chan) == pytest.approx(6 * (0.4 / 0.53 * 0.2 / 0.28234 * 0.6) ** 3 * grad,
                                          rel=1e-12)
    assert float(j_leak) == pytest.approx(0.11 * grad, rel=1e-12)
    assert float(j_pump) == pytest.approx(0.8 * 0.04 / (0.01 + 0.04), rel=1e-12)


def test_resting_state_is_the_fixed_point_at_baseline_ip3():
    import jax.numpy as jnp

    from astroflax.biology.calcium import resting_calcium

    # The whole AN model at r = 0 reduces to Li–Rinzel at IP3* (nothing else is driven).
    ca_star = _fixed_point(0.16)
    assert resting_calcium(ANParams(), dtype=jnp.float64) == pytest.approx(ca_star, rel=1e-7)
    # float32: the slow gate h stalls within ulp(h) tau_h / (2 dt) ~ 6e-4 of h_inf (documented).
    f32 = resting_calcium(ANParams())
    assert f32 == pytest.approx(ca_star, rel=1.5e-3)


def test_between_the_hopf_points_the_fixed_point_is_unstable_and_ca_oscillates():
    import jax.numpy as jnp

    # Li & Rinzel (1994): an IP3 window of Ca2+ oscillations; with these constants ~0.33-0.53 uM.
    ip3, p = 0.45, ANParams()
    assert _max_real_eigenvalue(ip3) > 0.01, "test premise: an unstable fixed point"
    ca, h = li_rinzel.relax(jnp.asarray(p.ca_init_um, jnp.float64), jnp.asarray(p.h_init),
                            jnp.asarray(ip3, jnp.float64), p, seconds=300.0)
    trace = []
    for _ in range(40):  # sample 20 s of the limit cycle every 0.5 s
        ca, h = li_rinzel.relax(ca, h, jnp.asarray(ip3, jnp.float64), p, seconds=0.5)
        trace.append(float(ca))
    assert max(trace) - min(trace) > 0.1, f"no sustained oscillation: {min(trace)}..{max(trace)}"
