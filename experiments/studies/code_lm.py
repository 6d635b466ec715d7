"""code_lm: language modelling on real text every machine has, for every attention variant.

Command::

    python -m experiments.study --study=code_lm            # -> studies/code_lm
    python -m experiments.study --study=code_lm:smoke

Data: the Python standard library's own source (``astroflax/data/code.py``: ``*.py`` outside
test directories, split by module into train / validation / test, word-level code tokens with
a training-split vocabulary of 4096, windows of 64 tokens exactly as WikiText-2's). Model: the
decoder of ``astroflax.models.AstroLM`` (post-LN, tied embeddings), 1 layer, width 64, 2 heads
(per-head m = 32), trained identically for every arm: AdamW 2e-3, warmup + cosine, batch 32,
250 steps (512 k tokens, a quarter of an epoch of the 2.1 M training tokens), 3 seeds.
Validation perplexity is measured every 100 steps and at the end (256 evenly spaced validation
windows, 16 k tokens); test perplexity once at the end on 256 evenly spaced test windows.
Every arm adds the same sinusoidal positional table to √D-scaled token embeddings (the astro
family adds its astrocytic term, part of its mechanism), so variant arms differ in attention
only.

Arms: softmax (reference); every other variant (astro, astro_no_pe, astro_no_nonlin, linear,
kozachkov_iso, kozachkov_rf) and ``none`` (no attention) vs softmax; controls vs softmax: a
learned positional table, and token embeddings without the √D scale (the positional settings
that flipped a single-seed ranking in review); controls vs astro: the paper's positional setting
(the astrocytic term only, no table), ``m_div = m`` (attention switched on at initialisation;
also for kozachkov_iso vs kozachkov_iso), and a non-causal decoder, with the paper's m_div and
with m_div = m (it sees the future; what that is worth is the evidence on the paper's WikiText-2
perplexity of 33.8).

Measured wall time (2026-11-30, the project's 2-core machine shared with other jobs): 45 runs,
3574 s of training by ``timing.json`` (41-106 s per run on average per arm); the first 30 runs
took 40 min for the whole command (load average 2-15), the other 15 another 30 min (load 4-7),
test-split evaluations included.
"""

from __future__ import annotations

from astroflax.nn import VARIANTS
from experiments.configs import common
from experiments.studies import Arm, GridStudy, m_div_arm, variant_arms

FEATURES, HEADS, LENGTH, VOCAB, STEPS = 64, 2, 64, 4096, 250
ORDER = ("softmax", "astro", "astro_no_pe", "astro_no_nonlin", "linear", "kozachkov_iso",
         "kozachkov_rf", "none")


def base_config(smoke: bool):
    """The code-LM config (see the module docstring)."""
    c = common.base_config("code_lm")
    c.data.name = "code"
    c.data.tokenizer = "word"
    c.data.vocab_size = VOCAB
    c.data.max_len = LENGTH
    c.data.eval_split = "validation"
    c.data.num_eval = 256
    c.model.name = "tiny_wikitext2"
    c.model.attention = "softmax"
    c.model.features, c.model.num_heads, c.model.num_layers = FEATURES, HEADS, 1
    c.model.dropout = 0.0
    # One positional setting for every arm (a sinusoidal table added to √D-scaled token
    # embeddings; the astro family adds its astrocytic term as part of its mechanism), so
    # variant arms differ in attention only. The paper's mix is an arm of its own.
    c.model.pos_embedding = "sinusoidal"
    c.train.batch_size = 32
    c.train.num_train_steps = STEPS
    c.train.learning_rate = 2e-3
    c.train.warmup_steps = 40
    c.train.weight_decay = 0.01
    c.train.log_every_steps = 50
    c.train.eval_every_steps = 100
    c.train.checkpoint_every_steps = 10_000  # evals checkpoint anyway
    c.train.keep_checkpoints = 1
    if smoke:
        c.data.vocab_size = 512
        c.data.max_len = 16
        c.data.num_train, c.data.num_eval = 64, 16
        c.model.features, c.model.num_heads = 16, 2
        common.smoke_schedule(c)
    return c


def arms(smoke: bool) -> tuple[Arm, ...]:
    """The arms (smoke: softmax and astro only)."""
    if smoke:
        return tuple(variant_arms(("softmax", "astro")))
    out = variant_arms(v for v in ORDER if v in VARIANTS)
    out += [Arm("softmax-pos=learned", {"model.attention": "softmax",
                                        "model.pos_embedding": "learned"},
                "positions sinusoidal -> learned table", "softmax"),
            Arm("softmax-embed_scale=one", {"model.attention": "softmax",
                                            "model.embed_scale": "one"},
                "token embeddings × √D -> × 1 (before adding the sinusoidal table)",
                "softmax"),
            Arm("astro-pos=paper", {"model.attention": "astro", "model.pos_embedding": "paper"},
                "positions: sinusoidal table + astrocytic term -> astrocytic term only (the "
                "paper's setting)", "astro"),
            *(m_div_arm(v, f"100·D = {100 * FEATURES}", FEATURES // HEADS)
              for v in ("astro", "kozachkov_iso"))]
    out.append(Arm("astro-noncausal", {"model.attention": "astro", "model.causal": False},
                   "causal -> non-causal (sees the future: a control)", "astro"))
    # With m_div = m the attention is switched on: how much can a decoder whose attention works
    # gain from seeing the future?
    out.append(Arm("astro-m_div=m-noncausal",
                   {"model.attention": "astro", "model.m_div": "m", "model.causal": False},
                   "causal -> non-causal (a control)", "astro-m_div=m"))
    return tuple(out)


def get_study(arg: str | None = None) -> GridStudy:
    """The study; ``arg="smoke"``: 2 arms × 2 seeds × 6 steps of a width-16 decoder."""
    smoke = arg == "smoke"
    return GridStudy(
        name="code_lm" + ("_smoke" if smoke else ""),
        question="Which attention variants model real text (Python source) best, and what do "
                 "the positional, m_div and causality controls change?",
        base=base_config(smoke), arms=arms(smoke), seeds=(0, 1) if smoke else (0, 1, 2),
        metric="eval_perplexity", extra_eval=("test",))
