"""The tripartite synapse, simulated: where the astrocyte's Ca2+ nonlinearity (alpha) comes from.

The astrocyte-neuron model of Wade et al. (2011, 2012) with Li-Rinzel Ca2+ (docs/model.md §6), its
Ca2+-versus-rate curve (the paper's Fig. 3), and the fitted exponent that configs can load:

    from astroflax.biology import load_fitted_alpha
    alpha = load_fitted_alpha("runs/biology_calcium/calcium.json")

See ``README.md`` in this folder for the choices made where the paper and the lab's code leave room.
"""

from astroflax.biology.an_model import ANState, ANTrace, initial_state, simulate, step
from astroflax.biology.calcium import CalciumCurve, fit_alpha, measure_curve, run_experiment
from astroflax.biology.fit import PowerLawFit, bootstrap_alpha, fit_power_law, load_fitted_alpha
from astroflax.biology.params import ANParams

__all__ = [
    "ANParams",
    "ANState",
    "ANTrace",
    "CalciumCurve",
    "PowerLawFit",
    "bootstrap_alpha",
    "fit_alpha",
    "fit_power_law",
    "initial_state",
    "load_fitted_alpha",
    "measure_curve",
    "run_experiment",
    "simulate",
    "step",
]
