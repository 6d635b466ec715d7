"""CIFAR-10, attention="astro_no_pe": ablation without astrocytic positions.

``python -m experiments.run --config=cifar_astro_no_pe``, setup: ``common.paper_config``.
Expected (paper): 85 % after 111 ± 4 epochs (final accuracy not reported).
Runtime (2-core CPU): not timed; the architecture of ``cifar_astro``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("cifar10", "astro_no_pe", "cifar_astro_no_pe", arg)
