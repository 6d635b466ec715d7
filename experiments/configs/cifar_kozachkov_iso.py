"""CIFAR-10, attention="kozachkov_iso": Kozachkov et al.'s neuron-astrocyte attention.

``python -m experiments.run --config=cifar_kozachkov_iso``, setup: ``common.paper_config``.
Expected (paper): 96.8 ± 0.2 % test accuracy; 85 % after 215 ± 2 epochs.
Runtime (2-core CPU): not timed; the architecture of ``cifar_astro``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("cifar10", "kozachkov_iso", "cifar_kozachkov_iso", arg)
