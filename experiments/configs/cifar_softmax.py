"""CIFAR-10, attention="softmax".

CIFAR-10, vanilla softmax attention (the paper's Transformer baseline).

Command::

    python -m experiments.run --config=cifar_softmax
    python -m experiments.run --config=cifar_softmax:smoke   # seconds on CPU

Setup (SPEC §7): paper_cifar10 preset (3×3 conv stem, patch 2, 8 layers, 8 heads, D = 256, m_div
= 500·D), AdamW lr 1e-3, batch 32, 250 epochs; astroflax's choices where the paper is silent:
cosine schedule, 5 warmup epochs, weight decay 0.05, random crop + flip.

Expected result (paper, SPEC §7): 97.4 ± 0.1 % test accuracy.

Expected runtime: measured on a 2-core x86 CPU (the project's dev machine, jax 0.10.2): 5.84 s
per training step at batch 32, so the full run (250 epochs × 1562 steps) would take about 26
days there; it is meant for a GPU/TPU, where it has not been timed (no accelerator was available
when this was written). On a CPU use the smoke variant.

Data: TFDS cifar10 as array_record (see the error message of a first run for the one preparation
command).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("cifar10", "softmax", "cifar_softmax", arg)
