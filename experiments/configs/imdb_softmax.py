"""IMDB, attention="softmax": the Transformer baseline.

``python -m experiments.run --config=imdb_softmax``, setup: ``common.paper_config``.
Expected (paper): 88.9 ± 0.1 % test accuracy.
Runtime (2-core CPU): 1.13 s per training step at batch 64 (full run: about 15 hours).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("imdb", "softmax", "imdb_softmax", arg)
