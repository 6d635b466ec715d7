"""CIFAR-10, attention="softmax": the Transformer baseline.

``python -m experiments.run --config=cifar_softmax``, setup: ``common.paper_config``.
Expected (paper): 97.4 ± 0.1 % test accuracy.
Runtime (2-core CPU): 5.84 s per training step at batch 32 (full run: about 26 days).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("cifar10", "softmax", "cifar_softmax", arg)
