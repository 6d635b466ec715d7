"""IMDB, attention="astro_no_pe": ablation without astrocytic positions.

``python -m experiments.run --config=imdb_astro_no_pe``, setup: ``common.paper_config``.
Expected (paper): 85 % after 22 ± 2 epochs (final accuracy not reported).
Runtime (2-core CPU): not timed; the architecture of ``imdb_astro``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("imdb", "astro_no_pe", "imdb_astro_no_pe", arg)
