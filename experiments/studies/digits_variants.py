"""digits_variants: does astromorphic attention learn digits as well and as fast as the others?

Command::

    python -m experiments.study --study=digits_variants      # -> studies/digits_variants
    python -m experiments.study --study=digits_variants:smoke

Data: scikit-learn digits (8×8, real, offline), the fixed stratified split (1437 train / 360
test). Model: the digits config's ViT (``experiments/configs/common.py:digits_config``) shrunk
for a grid of many runs: width 32, 2 layers, 2 heads (per-head width m = 16), 16 patch tokens,
6 epochs (264 steps of 32) evaluated after every epoch. Every arm adds the same sinusoidal
positional table (the astro family adds its astrocytic term, part of its mechanism), so the
variant arms differ in the attention mechanism only.

Arms (each differs from its reference in one named thing):

* every attention variant with the paper's ``m_div`` and ``none`` (attention contributes
  nothing: a block is its FFN only), each vs softmax;
* every variant that has the scaling parameter of Eq. 11 with ``m_div = m`` (vs the same
  variant with its own ``m_div``: 500·D for the astro family and kozachkov_iso, 1 for linear
  and kozachkov_rf); softmax and none have no such parameter;
* a hard setting, 200 training images (batch 40, 30 epochs, evaluated every 5 epochs):
  softmax (its own reference), astro, linear, kozachkov_rf and none.

Metrics: final and best test accuracy; epochs to 75 % and 85 % (the paper's learning-speed
claim, at this short schedule) with how many seeds reached them. 5 seeds per arm.

What it answers: accuracy parity and the learning-speed ordering of the paper (docs/model.md
§7) on a small real task, and whether a variant beats an attention-free block at all.

Measured wall time (2026-11-30, the project's 2-core machine): the 95 runs took 1715 s of
training in all (``timing.json``, compilation included; 5-85 s per run). The 40 variant runs
(load average 15-23) took 950 s; the 55 m_div = m and 200-image runs (load 2-4, the compilation
cache warm) took 9.5 min of wall time for the whole command.
"""

from __future__ import annotations

from astroflax.nn import VARIANTS
from experiments.configs import common
from experiments.studies import Arm, GridStudy, m_div_arm, variant_arms

FEATURES, HEADS = 32, 2
ORDER = ("softmax", "astro", "astro_no_pe", "astro_no_nonlin", "linear", "kozachkov_iso",
         "kozachkov_rf", "none")
VARIANT_ARMS = tuple(v for v in ORDER if v in VARIANTS)
SEEDS = (0, 1, 2, 3, 4)
EPOCHS = 6.0
TARGETS = (0.75, 0.85)
#: The m_div sweep: every variant that has the scaling parameter of Eq. 11 (softmax and none
#: have none), and the hard setting: 200 training images, batch 40, 30 epochs.
M_DIV_ARMS = tuple(v for v in VARIANT_ARMS if VARIANTS[v].kernel == "astro")
SUBSET, SUBSET_EPOCHS = 200, 30.0
SUBSET_ARMS = ("softmax", "astro", "linear", "kozachkov_rf", "none")


def base_config(smoke: bool):
    """The digits config, shrunk (see the module docstring)."""
    c = common.digits_config("softmax", "digits_variants")
    c.model.features, c.model.num_heads, c.model.num_layers = FEATURES, HEADS, 2
    # One positional setting for every arm (a sinusoidal table; the astro family adds its
    # astrocytic term as part of its mechanism), so variant arms differ in attention only.
    c.model.pos_embedding = "sinusoidal"
    c.train.num_epochs = EPOCHS
    c.train.warmup_steps = 30
    c.train.log_every_steps = 44
    c.train.checkpoint_every_steps = 10_000   # evals checkpoint anyway (once per epoch)
    c.train.keep_checkpoints = 1
    if smoke:
        c.model.features, c.model.num_heads, c.model.num_layers = 16, 2, 1
        c.data.num_train, c.data.num_eval = 64, 32
        common.smoke_schedule(c)
    return c


def _paper_m_div(variant: str) -> str:
    """The variant's own m_div at this width, as the table states it."""
    fixed = VARIANTS[variant].m_div
    return f"{fixed:g}" if isinstance(fixed, float) else f"500·D = {500 * FEATURES}"


def arms(smoke: bool) -> tuple[Arm, ...]:
    """The arms (smoke: softmax and astro only)."""
    if smoke:
        return tuple(variant_arms(("softmax", "astro")))
    out = variant_arms(VARIANT_ARMS)
    out += [m_div_arm(v, _paper_m_div(v), FEATURES // HEADS) for v in M_DIV_ARMS]
    sub = {"data.num_train": SUBSET, "train.num_epochs": SUBSET_EPOCHS,
           "train.batch_size": 40, "train.warmup_steps": 10, "train.log_every_steps": 25,
           "train.eval_every_steps": 25}
    # The hard setting is a second reference (its data and recipe differ from the full one).
    out += [Arm(f"n{SUBSET}-softmax", {**sub, "model.attention": "softmax"})]
    out += [Arm(f"n{SUBSET}-{v}", {**sub, "model.attention": v}, f"attention softmax -> {v}",
                f"n{SUBSET}-softmax") for v in SUBSET_ARMS if v != "softmax"]
    return tuple(out)


def get_study(arg: str | None = None) -> GridStudy:
    """The study; ``arg="smoke"``: 2 arms × 2 seeds × 6 steps of a 1-layer width-16 model."""
    smoke = arg == "smoke"
    return GridStudy(
        name="digits_variants" + ("_smoke" if smoke else ""),
        question="Do the attention variants reach the same digits accuracy, how fast, and "
                 "does any beat an attention-free block?",
        base=base_config(smoke), arms=arms(smoke), seeds=(0, 1) if smoke else SEEDS,
        metric="eval_accuracy", targets=TARGETS)
