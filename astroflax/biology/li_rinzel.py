"""Li–Rinzel astrocyte Ca2+ dynamics (Li & Rinzel 1994; Wade et al. 2012, Eqs. 8-13).

Two variables, cytosolic Ca2+ and the IP3-receptor inactivation gate h, driven by IP3:

    dCa/dt = J_chan + J_leak - J_pump
    J_chan = r_C (m_inf n_inf h)^3 (c0 - (1 + c1) Ca)      IP3R (CICR) flux out of the ER
    J_leak = r_L (c0 - (1 + c1) Ca)                         passive ER leak
    J_pump = v_ER Ca^2 / (k_ER^2 + Ca^2)                    SERCA uptake into the ER
    m_inf = IP3 / (IP3 + d1),   n_inf = Ca / (Ca + d5)
    dh/dt = (h_inf - h) / tau_h,  h_inf = Q2 / (Q2 + Ca),  tau_h = 1 / (a2 (Q2 + Ca))
    Q2 = d2 (IP3 + d1) / (IP3 + d3)

All functions are elementwise, dtype-preserving (the parameters enter as weak Python floats),
and take ``ANParams`` for the constants.
"""

from __future__ import annotations

import functools

import jax

from astroflax.biology.params import ANParams


def fluxes(ca: jax.Array, h: jax.Array, ip3: jax.Array,
           p: ANParams) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The three Ca2+ fluxes of the Li–Rinzel model.

    Args:
        ca: cytosolic Ca2+, uM, any shape.
        h: IP3R inactivation gate, dimensionless, broadcastable with ``ca``.
        ip3: IP3, uM, broadcastable with ``ca``.
        p: model parameters.

    Returns:
        ``(J_chan, J_leak, J_pump)``, each in uM/s with the broadcast shape.
    """
    m_inf = ip3 / (ip3 + p.d1_um)
    n_inf = ca / (ca + p.d5_um)
    er_gradient = p.c0_um - (1.0 + p.c1) * ca
    j_chan = p.r_c_per_s * (m_inf * n_inf * h) ** 3 * er_gradient
    j_leak = p.r_l_per_s * er_gradient
    j_pump = p.v_er_um_per_s * ca * ca / (p.k_er_um ** 2 + ca * ca)
    return j_chan, j_leak, j_pump


def h_gate(ca: jax.Array, ip3: jax.Array, p: ANParams) -> tuple[jax.Array, jax.Array]:
    """Steady state and time constant of the inactivation gate.

    Args:
        ca: cytosolic Ca2+, uM.
        ip3: IP3, uM, broadcastable with ``ca``.
        p: model parameters.

    Returns:
        ``(h_inf, tau_h)``: dimensionless, and seconds.
    """
    q2 = p.d2_um * (ip3 + p.d1_um) / (ip3 + p.d3_um)
    return q2 / (q2 + ca), 1.0 / (p.a2_per_um_s * (q2 + ca))


def euler_step(ca: jax.Array, h: jax.Array, ip3: jax.Array, p: ANParams,
               dt: float) -> tuple[jax.Array, jax.Array]:
    """One forward-Euler step of (Ca, h) at fixed IP3, as in the lab's MATLAB.

    Args:
        ca: Ca2+ at time t, uM.
        h: gate at time t.
        ip3: IP3 at time t, uM.
        p: model parameters.
        dt: step, s.

    Returns:
        ``(ca, h)`` at time t + dt.
    """
    j_chan, j_leak, j_pump = fluxes(ca, h, ip3, p)
    h_inf, tau_h = h_gate(ca, ip3, p)
    return ca + (j_chan + j_leak - j_pump) * dt, h + (h_inf - h) / tau_h * dt


@functools.partial(jax.jit, static_argnames=("p", "seconds"))
def relax(ca: jax.Array, h: jax.Array, ip3: jax.Array, p: ANParams,
          seconds: float) -> tuple[jax.Array, jax.Array]:
    """Integrates the Li–Rinzel sub-model alone at constant IP3 for ``seconds`` (step ``p.dt``).

    Args:
        ca: initial Ca2+, uM, any shape.
        h: initial gate, same shape.
        ip3: the constant IP3, uM, broadcastable.
        p: model parameters (``p.dt`` is the step).
        seconds: simulated time, s.

    Returns:
        ``(ca, h)`` at the end.
    """
    def body(carry, _):
        return euler_step(*carry, ip3, p, p.dt), None

    (ca, h), _ = jax.lax.scan(body, (ca, h), None, length=p.validate().steps(seconds))
    return ca, h


__all__ = ["euler_step", "fluxes", "h_gate", "relax"]
