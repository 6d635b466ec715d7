"""CIFAR-10, attention="astro".

CIFAR-10, astromorphic attention, the paper's full model (sigmoid nonlinearity, alpha = 0.25,
astrocytic positional term).

Command::

    python -m experiments.run --config=cifar_astro
    python -m experiments.run --config=cifar_astro:smoke   # seconds on CPU

Setup (SPEC §7): paper_cifar10 preset (3×3 conv stem, patch 2, 8 layers, 8 heads, D = 256, m_div
= 500·D), AdamW lr 1e-3, batch 32, 250 epochs; astroflax's choices where the paper is silent:
cosine schedule, 5 warmup epochs, weight decay 0.05, random crop + flip.

Expected result (paper, SPEC §7): 97.0 ± 0.2 % test accuracy; 85 % reached after 45 ± 3 epochs.

Expected runtime: measured on a 2-core x86 CPU (the project's dev machine, jax 0.10.2): 4.70 s
per training step at batch 32, so the full run (250 epochs × 1562 steps) would take about 21
days there; it is meant for a GPU/TPU, where it has not been timed (no accelerator was available
when this was written). On a CPU use the smoke variant.

Data: TFDS cifar10 as array_record (see the error message of a first run for the one preparation
command).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("cifar10", "astro", "cifar_astro", arg)
