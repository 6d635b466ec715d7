"""scikit-learn digits, attention="linear".

Scikit-learn digits (8×8, offline, real), linear attention: the runner's offline check.

Command::

    python -m experiments.run --config=digits_linear
    python -m experiments.run --config=digits_linear:smoke     # seconds

Setup: see :func:`experiments.configs.common.digits_config` (a 2-layer ViT of width 64 on
16 patch tokens, 40 epochs). The test split is a fixed stratified 20 % (360 images).

Expected result and runtime: MEASURED_LINEAR
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.digits_config("linear", "digits_linear", arg)
