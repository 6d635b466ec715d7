"""IMDB, attention="kozachkov_rf".

IMDB, Kozachkov et al.'s original random-feature form (Performer FAVOR+ features approximating
softmax).

Command::

    python -m experiments.run --config=imdb_kozachkov_rf
    python -m experiments.run --config=imdb_kozachkov_rf:smoke   # seconds on CPU

Setup (SPEC §7): paper_imdb preset (1 layer, 4 heads, D = 128, length 400, m_div = 500·D), AdamW
lr 1e-5, batch 64, 120 epochs; vocabulary: the 20 000 most frequent training words, GloVe 840B
300-d vectors with --config.data.glove_path=FILE (the paper's input; without it the embeddings
are learned); cosine schedule, 1 warmup epoch, weight decay 0.01 (not stated in the paper).

Expected result (paper, SPEC §7): not reported in the paper (an extra baseline or ablation of
astroflax); no expectation is claimed.

Expected runtime: not timed for this variant; it has the architecture of ``imdb_astro``,
measured at 0.80 s per training step at batch 64 on a 2-core x86 CPU (about 10 hours for the
full run there; not timed on a GPU/TPU). On a CPU use the smoke variant.

Data: TFDS imdb_reviews as array_record (see the error message of a first run for the one
preparation command).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("imdb", "kozachkov_rf", "imdb_kozachkov_rf", arg)
