"""WikiText-2, attention="astro": the paper's full model.

``python -m experiments.run --config=wikitext2_astro``, setup: ``common.paper_config``.
Expected (paper): test perplexity 33.8.
Runtime (2-core CPU): 56.40 s per training step at batch 24 (full run: about 6 days).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("wikitext2", "astro", "wikitext2_astro", arg)
