"""scikit-learn digits, attention="kozachkov_iso".

Scikit-learn digits (8×8, offline, real), Kozachkov iso-architecture attention: the runner's
offline check.

Command::

    python -m experiments.run --config=digits_kozachkov_iso
    python -m experiments.run --config=digits_kozachkov_iso:smoke     # seconds

Setup: see :func:`experiments.configs.common.digits_config` (a 2-layer ViT of width 64 on
16 patch tokens, 40 epochs). The test split is a fixed stratified 20 % (360 images).

Expected result and runtime: MEASURED_KOZACHKOV_ISO
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.digits_config("kozachkov_iso", "digits_kozachkov_iso", arg)
