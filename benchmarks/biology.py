"""Wall time of the AN-model sweep behind the paper's Fig. 3, and the alpha it yields.

Command: ``python -m benchmarks.biology [--json PATH] [--repeats N]``. Simulates 10 rates
(1-10 Hz) x 8 seeds x 400 s at dt = 1 ms (32 M model steps, each with 20 synapses) as one
jit-compiled, vmapped scan, and fits alpha on it as ``experiments.biology_calcium`` does.
Goal: <= 60 s after compilation on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from astroflax.biology.an_model import simulate
from astroflax.biology.calcium import (
    PAPER_ALPHA,
    fit_alpha,
    resting_calcium,
    summarise,
)
from astroflax.biology.params import ANParams
from benchmarks._common import machine

RATES_HZ = np.arange(1.0, 11.0)
SEEDS = np.arange(8)
DURATION_S, TRANSIENT_S = 400.0, 100.0


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="save the results here")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after compiling")
    args = parser.parse_args(argv)

    p = ANParams()

    def run():
        return simulate(RATES_HZ, SEEDS, p, duration_s=DURATION_S)

    trace, first = _timed(run)
    times = [_timed(run)[1] for _ in range(args.repeats)]
    steps = RATES_HZ.size * SEEDS.size * p.steps(DURATION_S)
    curve = summarise(trace, RATES_HZ, SEEDS, ca_rest_um=resting_calcium(p),
                      record_every_s=1.0, transient_s=TRANSIENT_S)
    fit = fit_alpha(curve)["fit"]

    where = machine()
    result = {
        "date": where["date"][:10],
        "machine": f"{where['cpu']}, {where['cpu_count']} CPU cores",
        "jax": where["jax"], "backend": where["backend"],
        "workload": f"{RATES_HZ.size} rates x {SEEDS.size} seeds x {DURATION_S:g} s, dt = 1 ms",
        "first_call_s_including_compile": first, "run_s": times, "best_run_s": min(times),
        "model_steps_per_s": steps / min(times), "goal_s": 60.0,
        "alpha": fit["alpha"], "alpha_ci95": fit["ci95"],
        "alpha_bootstrap_ci95_over_seeds": fit["bootstrap_ci95_over_seeds"],
        "alpha_fit_rates_hz": fit["rates_hz"], "paper_alpha": PAPER_ALPHA,
        "mean_ca_um": dict(zip(RATES_HZ.tolist(), curve.ca_um.mean(axis=1).tolist(),
                               strict=True)),
    }
    rows = [
        ("workload", result["workload"]),
        ("machine", f"{result['machine']} ({result['backend']}, jax {result['jax']})"),
        ("first call (compile + run)", f"{first:.2f} s"),
        ("run after compile (best)", f"{min(times):.2f} s  (goal <= 60 s; runs "
                                     + ", ".join(f"{t:.2f}" for t in times) + ")"),
        ("throughput", f"{result['model_steps_per_s'] / 1e6:.1f} M model steps / s"),
        ("alpha (1-10 Hz grid)", f"{fit['alpha']:.3f}  95% CI [{fit['ci95'][0]:.3f}, "
                                 f"{fit['ci95'][1]:.3f}], seeds' bootstrap "
                                 f"[{fit['bootstrap_ci95_over_seeds'][0]:.3f}, "
                                 f"{fit['bootstrap_ci95_over_seeds'][1]:.3f}]"),
        ("  fitted on", f"{fit['rates_hz']} Hz (engaged branch), Ca - Ca_rest = A r^alpha"),
        ("paper", f"{PAPER_ALPHA}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
