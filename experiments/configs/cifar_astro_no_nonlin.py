"""CIFAR-10, attention="astro_no_nonlin": ablation, alpha = 1 and no sigmoid.

``python -m experiments.run --config=cifar_astro_no_nonlin``, setup: ``common.paper_config``.
Expected (paper): not reported in the paper (astroflax's extra baseline).
Runtime (2-core CPU): not timed; the architecture of ``cifar_astro``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("cifar10", "astro_no_nonlin", "cifar_astro_no_nonlin", arg)
