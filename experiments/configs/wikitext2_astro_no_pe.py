"""WikiText-2, attention="astro_no_pe": ablation without astrocytic positions.

``python -m experiments.run --config=wikitext2_astro_no_pe``, setup: ``common.paper_config``.
Expected (paper): not reported in the paper (astroflax's extra baseline).
Runtime (2-core CPU): not timed; the architecture of ``wikitext2_astro``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("wikitext2", "astro_no_pe", "wikitext2_astro_no_pe", arg)
