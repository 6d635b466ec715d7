"""WikiText-2, attention="astro".

WikiText-2, astromorphic attention, the paper's full model (sigmoid nonlinearity, alpha = 0.25,
astrocytic positional term).

Command::

    python -m experiments.run --config=wikitext2_astro
    python -m experiments.run --config=wikitext2_astro:smoke   # seconds on CPU

Setup (SPEC §7): paper_wikitext2 preset (decoder, 1 layer, 6 heads, D = 768, length 512, m_div =
100·D, tied embeddings), AdamW lr 1e-5, batch 24, 50 epochs; GPT-2 BPE tokens (tiktoken;
word-level fallback when its vocabulary cannot be loaded, reported in summary.json); perplexity
on the test split; cosine schedule, 1 warmup epoch, weight decay 0.01 (not stated in the paper).

Expected result (paper, SPEC §7): test perplexity 33.8.

Expected runtime: measured on a 2-core x86 CPU (the project's dev machine, jax 0.10.2): 56.40 s
per training step at batch 24, so the full run (50 epochs × ~191 steps of 24 × 512 GPT-2 tokens)
would take about 6 days there; it is meant for a GPU/TPU, where it has not been timed (no
accelerator was available when this was written). On a CPU use the smoke variant.

Data: wikitext-2-raw-v1.zip (or its wiki.*.raw files) in --config.data.data_dir (default
~/tensorflow_datasets/downloads/manual).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("wikitext2", "astro", "wikitext2_astro", arg)
