"""benchmarks.init_scale: its measurements agree with identities that hold at any init."""

from __future__ import annotations

import jax
from flax import nnx

from astroflax.models import create_model
from benchmarks.init_scale import embedded, random_batch, sigmoid_rows, variant_row


def test_kozachkov_iso_output_is_linear_attention_divided_by_m_div():
    # Same seed, same parameter draws (neither has a positional term), zero output bias:
    # W_O·(y / m_div) = (W_O·y) / m_div exactly, so the scales differ by m_div.
    key = jax.random.key(1)
    iso = variant_row("tiny_imdb", "kozachkov_iso", key, 2)
    lin = variant_row("tiny_imdb", "linear", key, 2)
    m_div = create_model("tiny_imdb", attention="kozachkov_iso").trunk.stack.blocks[0] \
        .attention.m_div
    assert iso[1] == lin[1]  # the same attention input
    assert abs(float(iso[2]) * m_div / float(lin[2]) - 1) < 2e-2  # 2 printed digits


def test_sigmoid_gap_is_within_the_cubic_taylor_bound():
    # σ(x) = 1/2 + x/4 - x³/48 + O(x⁵): the reported gap is at most max|x|³/48 (+ float32 ulp).
    model = create_model("tiny_wikitext2", attention="astro", rngs=nnx.Rngs(0))
    inputs, mask, _ = random_batch("tiny_wikitext2", jax.random.key(1), 2)
    for row in sigmoid_rows(model, embedded(model, inputs), mask):
        max_arg, gap = float(row[2]), float(row[4])
        assert gap <= max_arg ** 3 / 48 + 1e-7
