"""IMDB, attention="kozachkov_iso": Kozachkov et al.'s neuron-astrocyte attention.

``python -m experiments.run --config=imdb_kozachkov_iso``, setup: ``common.paper_config``.
Expected (paper): 88.4 ± 0.1 % test accuracy; 85 % after 54 ± 4 epochs.
Runtime (2-core CPU): not timed; the architecture of ``imdb_astro``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("imdb", "kozachkov_iso", "imdb_kozachkov_iso", arg)
