"""WikiText-2, attention="kozachkov_rf".

WikiText-2, Kozachkov et al.'s original random-feature form (Performer FAVOR+ features
approximating softmax).

Command::

    python -m experiments.run --config=wikitext2_kozachkov_rf
    python -m experiments.run --config=wikitext2_kozachkov_rf:smoke   # seconds on CPU

Setup (SPEC §7): paper_wikitext2 preset (decoder, 1 layer, 6 heads, D = 768, length 512, m_div =
100·D, tied embeddings), AdamW lr 1e-5, batch 24, 50 epochs; GPT-2 BPE tokens (tiktoken;
word-level fallback when its vocabulary cannot be loaded, reported in summary.json); perplexity
on the test split; cosine schedule, 1 warmup epoch, weight decay 0.01 (not stated in the paper).

Expected result (paper, SPEC §7): not reported in the paper (an extra baseline or ablation of
astroflax); no expectation is claimed.

Expected runtime: not timed for this variant; it has the architecture of ``wikitext2_astro``,
measured at 56.40 s per training step at batch 24 on a 2-core x86 CPU (about 6 days for the full
run there; not timed on a GPU/TPU). On a CPU use the smoke variant.

Data: wikitext-2-raw-v1.zip (or its wiki.*.raw files) in --config.data.data_dir (default
~/tensorflow_datasets/downloads/manual).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("wikitext2", "kozachkov_rf", "wikitext2_kozachkov_rf", arg)
