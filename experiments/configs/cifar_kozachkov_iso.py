"""CIFAR-10, attention="kozachkov_iso".

CIFAR-10, Kozachkov et al.'s neuron-astrocyte attention at the same architecture (alpha = 1, no
sigmoid, no positional term).

Command::

    python -m experiments.run --config=cifar_kozachkov_iso
    python -m experiments.run --config=cifar_kozachkov_iso:smoke   # seconds on CPU

Setup (SPEC §7): paper_cifar10 preset (3×3 conv stem, patch 2, 8 layers, 8 heads, D = 256, m_div
= 500·D), AdamW lr 1e-3, batch 32, 250 epochs; astroflax's choices where the paper is silent:
cosine schedule, 5 warmup epochs, weight decay 0.05, random crop + flip.

Expected result (paper, SPEC §7): 96.8 ± 0.2 % test accuracy; 85 % reached after 215 ± 2 epochs
("without both").

Expected runtime: not timed for this variant; it has the architecture of ``cifar_astro``,
measured at 4.70 s per training step at batch 32 on a 2-core x86 CPU (about 21 days for the full
run there; not timed on a GPU/TPU). On a CPU use the smoke variant.

Data: TFDS cifar10 as array_record (see the error message of a first run for the one preparation
command).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """The config; ``arg="smoke"`` shrinks it to seconds on CPU."""
    return common.paper_config("cifar10", "kozachkov_iso", "cifar_kozachkov_iso", arg)
