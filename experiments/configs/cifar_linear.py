"""CIFAR-10, attention="linear": linear attention (Katharopoulos et al. 2020).

``python -m experiments.run --config=cifar_linear``, setup: ``common.paper_config``.
Expected (paper): not reported in the paper (astroflax's extra baseline).
Runtime (2-core CPU): not timed; the architecture of ``cifar_astro``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("cifar10", "linear", "cifar_linear", arg)
