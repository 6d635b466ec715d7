"""WikiText-2, attention="softmax": the Transformer baseline.

``python -m experiments.run --config=wikitext2_softmax``, setup: ``common.paper_config``.
Expected (paper): test perplexity 73.4.
Runtime (2-core CPU): 29.40 s per training step at batch 24 (full run: about 3 days).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("wikitext2", "softmax", "wikitext2_softmax", arg)
