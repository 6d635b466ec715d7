"""Astrocyte Ca2+ versus presynaptic rate (paper Fig. 3) and the fitted alpha of Eq. 14.

Command: ``python -m experiments.biology_calcium --out runs/biology_calcium [--quick]``
writes ``calcium.json`` (curve, fitted alpha with its 95% interval, beside the paper's 0.25)
and ``calcium.png``. Expected: ~9 s on 2 CPU cores (15 rates x 8 seeds x 400 s, plus r = 0),
and alpha = 0.280, 95% CI [0.208, 0.352] on the engaged branch, 2-10 Hz (paper: 0.25; see
``astroflax/biology/README.md``).
Configs read the result with ``astroflax.biology.load_fitted_alpha(".../calcium.json")``.
"""

from __future__ import annotations

import argparse

from astroflax.biology.calcium import run_experiment


def main(argv: list[str] | None = None) -> None:
    """Parses the flags, runs the experiment, prints the fit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/biology_calcium", help="output folder")
    parser.add_argument("--quick", action="store_true", help="3 seeds x 150 s, for a smoke run")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    args = parser.parse_args(argv)
    result = run_experiment(args.out, quick=args.quick, seeds=args.seeds)
    fit = result["fit"]
    lo, hi = fit["ci95"]
    print(f"alpha = {fit['alpha']:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] "
          f"(paper {result['paper_alpha']}); form: {fit['form']}; rates {fit['rates_hz']} Hz")
    print(f"wrote {args.out}/calcium.json and calcium.png "
          f"({result['wall_time_s_including_compile']:.1f} s)")


if __name__ == "__main__":
    main()
