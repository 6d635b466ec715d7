"""CIFAR-10, attention="astro_no_nonlin".

CIFAR-10, ablation: astrocytic positional term without the nonlinearity (alpha = 1, no sigmoid).

Command::

    python -m experiments.run --config=cifar_astro_no_nonlin
    python -m experiments.run --config=cifar_astro_no_nonlin:smoke   # seconds on CPU

Setup (SPEC §7): paper_cifar10 preset (3×3 conv stem, patch 2, 8 layers, 8 heads, D = 256, m_div
= 500·D), AdamW lr 1e-3, batch 32, 250 epochs; astroflax's choices where the paper is silent:
cosine schedule, 5 warmup epochs, weight decay 0.05, random crop + flip.

Expected result (paper, SPEC §7): not reported in the paper (an extra baseline or ablation of
astroflax); no expectation is claimed.

Expected runtime: not timed for this variant; it has the architecture of ``cifar_astro``,
measured at 4.70 s per training step at batch 32 on a 2-core x86 CPU (about 21 days for the full
run there; not timed on a GPU/TPU). On a CPU use the smoke variant.

Data: TFDS cifar10 as array_record (see the error message of a first run for the one preparation
command).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("cifar10", "astro_no_nonlin", "cifar_astro_no_nonlin", arg)
