"""Parameters of the astrocyte–neuron (AN) model, with units, defaults and their sources.

Defaults are those of docs/model.md §6, which restates the public MATLAB implementation of
the authors' lab (NeuroCompLab-psu, ``Astromorphic_Self_Repair/MATLAB``; dt = 1 ms) of the model
of Wade et al., PLoS ONE 6:e29445 (2011) and Front. Comput. Neurosci. 6:76 (2012), with the
Li & Rinzel, J. Theor. Biol. 166:461 (1994) reduction of the De Young–Keizer IP3 receptor.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

GluRelease = Literal["threshold", "latched"]


@dataclasses.dataclass(frozen=True)
class ANParams:
    """Astrocyte–neuron model parameters (SI-style units stated per field; uM = micromolar).

    Frozen so that a params object can be a static argument of ``jax.jit``. Every field is a
    Python scalar; ``validate`` (called by the simulators) rejects non-physical values with a
    ``ValueError`` naming the field.
    """

    # --- Simulation -------------------------------------------------------------------------
    dt: float = 1e-3
    """Integration step, s. 1 ms is the lab's scheme exactly (docs/model.md §6, discretisation)."""
    event_duration: float = 1e-3
    """Duration of every pulse event (release current, 2-AG and glutamate increments), s.
    Fixed at the lab's 1 ms independently of ``dt`` so the model converges as dt -> 0."""

    # --- Topology (docs/model.md §6: one astrocyte, two neurons, 10 synapses each) ---------
    n_neurons: int = 2
    """Postsynaptic neurons whose synapses the astrocyte ensheaths."""
    synapses_per_neuron: int = 10
    """Presynaptic Poisson inputs per postsynaptic neuron."""

    # --- Synapse -------------------------------------------------------------------------------
    pr0: float = 0.3
    """Baseline release probability PR(0), dimensionless in [0, 1], same for every synapse."""
    i_inj_pa: float = 6650.0
    """Synaptic current of one release during its 1 ms pulse, pA."""

    # --- LIF postsynaptic neuron (Wade et al. 2012, Eq. 1) ------------------------------------
    tau_mem_s: float = 0.06
    """Membrane time constant, s."""
    r_m_gohm: float = 1.2
    """Membrane resistance, GOhm (so R_m * I in GOhm * pA = mV)."""
    v_th_mv: float = 9.0
    """Firing threshold, mV (reset to 0 mV)."""
    t_refrac_s: float = 2e-3
    """Absolute refractory period after a spike, s (membrane clamped at 0)."""

    # --- 2-AG and DSE (Wade et al. 2012, Eqs. 5-6) ---------------------------------------------
    tau_ag_s: float = 10.0
    """2-AG decay time constant, s."""
    r_ag_um_per_s: float = 0.8
    """2-AG production rate during a postsynaptic spike pulse, uM/s."""
    k_ag: float = -1000.0
    """DSE = k_ag * AG scaling, per uM (depression: negative)."""

    # --- IP3 (Wade et al. 2012, Eq. 7) -------------------------------------------------------
    ip3_star_um: float = 0.16
    """Baseline IP3, uM."""
    tau_ip3_s: float = 7.0
    """IP3 relaxation time constant, s."""
    r_ip3_per_s: float = 0.5
    """IP3 production per uM of 2-AG, 1/s (docs/model.md §6 quotes uM/s: rate times a
    concentration)."""

    # --- Li-Rinzel Ca2+ (Li & Rinzel 1994; Wade et al. 2012, Eqs. 8-13) ------------------------
    r_c_per_s: float = 6.0
    """Maximal CICR (IP3R channel) rate, 1/s."""
    r_l_per_s: float = 0.11
    """ER leak rate, 1/s."""
    c0_um: float = 2.0
    """Total free Ca2+ per cytosolic volume, uM."""
    c1: float = 0.185
    """ER-to-cytosol volume ratio, dimensionless."""
    v_er_um_per_s: float = 0.8
    """Maximal SERCA uptake rate, uM/s."""
    k_er_um: float = 0.1
    """SERCA activation constant, uM."""
    d1_um: float = 0.13
    """IP3 dissociation constant, uM."""
    d2_um: float = 1.049
    """Ca2+ inactivation dissociation constant, uM."""
    d3_um: float = 0.9434
    """IP3 dissociation constant, uM."""
    d5_um: float = 0.08234
    """Ca2+ activation dissociation constant, uM."""
    a2_per_um_s: float = 0.2
    """IP3R inactivation binding rate, 1/(uM s)."""

    # --- Glutamate and eSP (Wade et al. 2012, Eqs. 14-15) --------------------------------------
    ca_threshold_um: float = 0.3
    """Ca2+ level above which the astrocyte releases glutamate, uM."""
    glu_refractory_s: float = 0.3
    """Minimum interval between two glutamate releases, s (lab: ``t > t_Ca + 300`` steps)."""
    glu_release: GluRelease = "threshold"
    """``"threshold"``: release whenever Ca >= threshold and the refractory has elapsed
    (docs/model.md §6: "Ca above 0.3 uM releases glutamate"). ``"latched"``: the lab's MATLAB
    literally, where after the first crossing a release follows every refractory period
    whatever Ca does."""
    tau_glu_s: float = 0.1
    """Glutamate decay time constant, s."""
    r_glu_um_per_s: float = 10.0
    """Glutamate production rate during a release pulse, uM/s."""
    m_esp: float = 55e3
    """eSP weight per uM of glutamate, dimensionless (same units as DSE: percent of PR(0))."""
    tau_esp_s: float = 40.0
    """eSP time constant, s."""

    # --- Initial state (lab's values) -----------------------------------------------------------
    ca_init_um: float = 0.071006
    """Initial cytosolic Ca2+, uM."""
    h_init: float = 0.7791
    """Initial IP3R inactivation gate h, dimensionless."""
    ip3_init_um: float = 0.16
    """Initial IP3, uM."""

    def validate(self) -> ANParams:
        """Checks every field; returns ``self`` so it can be chained.

        Raises:
            ValueError: naming the first offending field and its value.
        """
        positive = (
            "dt", "event_duration", "tau_mem_s", "r_m_gohm", "t_refrac_s", "tau_ag_s",
            "tau_ip3_s", "r_c_per_s", "c0_um", "v_er_um_per_s", "k_er_um", "d1_um", "d2_um",
            "d3_um", "d5_um", "a2_per_um_s", "tau_glu_s", "tau_esp_s",
        )
        non_negative = (
            "i_inj_pa", "v_th_mv", "r_ag_um_per_s", "ip3_star_um", "r_ip3_per_s", "r_l_per_s",
            "c1", "ca_threshold_um", "glu_refractory_s", "r_glu_um_per_s", "m_esp",
            "ca_init_um", "ip3_init_um",
        )
        for name in positive + non_negative:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"ANParams.{name} must be a finite number, got {value!r}")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"ANParams.{name} must be > 0, got {getattr(self, name)!r}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"ANParams.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("pr0", "h_init"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"ANParams.{name} must lie in [0, 1], got {value!r}")
        if self.k_ag > 0 or not math.isfinite(self.k_ag):
            raise ValueError(f"ANParams.k_ag must be <= 0 (DSE depresses), got {self.k_ag!r}")
        for name in ("n_neurons", "synapses_per_neuron"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ANParams.{name} must be an int >= 1, got {value!r}")
        if self.dt > self.event_duration:
            # A pulse shorter than one step would be smeared over the step: the scheme's
            # convergence argument (docs/model.md §6) assumes dt <= 1 ms.
            raise ValueError(
                f"ANParams.dt must be <= event_duration ({self.event_duration}), got {self.dt!r}"
            )
        if self.glu_release not in ("threshold", "latched"):
            raise ValueError(
                f"ANParams.glu_release must be 'threshold' or 'latched', got {self.glu_release!r}"
            )
        return self

    def without_feedback(self) -> ANParams:
        """The same model with the astrocyte -> synapse pathway cut: DSE and eSP are zero.

        2-AG still drives IP3 (the forward pathway), but PR stays at PR(0).
        """
        return dataclasses.replace(self, k_ag=0.0, m_esp=0.0)

    def steps(self, seconds: float) -> int:
        """Number of ``dt`` steps in ``seconds`` (rounded to the nearest integer)."""
        return round(seconds / self.dt)
