"""WikiText-2, attention="kozachkov_iso": Kozachkov et al.'s neuron-astrocyte attention.

``python -m experiments.run --config=wikitext2_kozachkov_iso``, setup: ``common.paper_config``.
Expected (paper): test perplexity 123.3 (diverged in the paper).
Runtime (2-core CPU): not timed; the architecture of ``wikitext2_astro``.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("wikitext2", "kozachkov_iso", "wikitext2_kozachkov_iso", arg)
