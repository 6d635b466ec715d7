"""IMDB, attention="astro".

IMDB, astromorphic attention, the paper's full model (sigmoid nonlinearity, alpha = 0.25,
astrocytic positional term).

Command::

    python -m experiments.run --config=imdb_astro
    python -m experiments.run --config=imdb_astro:smoke   # seconds on CPU

Setup (SPEC §7): paper_imdb preset (1 layer, 4 heads, D = 128, length 400, m_div = 500·D), AdamW
lr 1e-5, batch 64, 120 epochs; vocabulary: the 20 000 most frequent training words, GloVe 840B
300-d vectors with --config.data.glove_path=FILE (the paper's input; without it the embeddings
are learned); cosine schedule, 1 warmup epoch, weight decay 0.01 (not stated in the paper).

Expected result (paper, SPEC §7): 88.7 ± 0.2 % test accuracy; 85 % reached after 16 ± 2 epochs.

Expected runtime: measured on a 2-core x86 CPU (the project's dev machine, jax 0.10.2): 0.80 s
per training step at batch 64, so the full run (120 epochs × 390 steps) would take about 10
hours there; it is meant for a GPU/TPU, where it has not been timed (no accelerator was
available when this was written). On a CPU use the smoke variant.

Data: TFDS imdb_reviews as array_record (see the error message of a first run for the one
preparation command).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("imdb", "astro", "imdb_astro", arg)
