"""WikiText-2, attention="kozachkov_rf": Kozachkov et al.'s random-feature form.

``python -m experiments.run --config=wikitext2_kozachkov_rf``, setup: ``common.paper_config``.
Expected (paper): not reported in the paper (astroflax's extra baseline).
Runtime (2-core CPU): not timed; the architecture of ``wikitext2_astro``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("wikitext2", "kozachkov_rf", "wikitext2_kozachkov_rf", arg)
