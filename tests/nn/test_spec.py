"""AttentionSpec: one hashable value per variant, m_div forms, overrides, the ``none`` block."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroflax.nn import (
    VARIANTS,
    AstroAttention,
    AttentionSpec,
    NoAttention,
    TransformerBlock,
    attention_spec,
    parse_m_div,
)
from tests.helpers import assert_close


def test_spec_round_trips_through_its_fields_and_hashes_by_value():
    for name, spec in VARIANTS.items():
        again = AttentionSpec(**dataclasses.asdict(spec))
        assert again == spec and hash(again) == hash(spec), name
        assert attention_spec(name) is spec
    # One canonical m_div form: equal meanings are equal specs (and equal jit cache keys).
    a = attention_spec("astro", m_div="64000")
    b = attention_spec("astro", m_div=64000)
    assert a == b and hash(a) == hash(b) and a.m_div == 64000.0
    assert attention_spec("astro", m_div="500 D") == attention_spec("astro", m_div="500D")
    assert len({VARIANTS["astro"], attention_spec("astro"), a}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        VARIANTS["astro"].alpha = 1.0  # type: ignore[misc]


def test_overrides_replace_fields_and_paper_m_div_keeps_the_variants_rule():
    spec = attention_spec("kozachkov_iso", alpha=0.5, mode="parallel")
    assert (spec.alpha, spec.sigmoid, spec.mode, spec.name) == (0.5, False, "parallel",
                                                                 "kozachkov_iso")
    assert attention_spec("linear", m_div="paper").m_div == 1.0
    assert attention_spec(spec, alpha=None) is spec


@pytest.mark.parametrize(("form", "width", "m", "expected"), [
    ("paper", 128, 32, 32.0),       # a bare layer: the kernel's default, m
    ("m", 128, 32, 32.0),
    ("64000", 128, 32, 64000.0),
    (7, 128, 32, 7.0),
    ("500D", 128, 32, 64000.0),     # 500 · 128
    ("2.5D", 16, 8, 40.0),          # 2.5 · 16
])
def test_each_m_div_form_resolves_to_the_hand_computed_divisor(form, width, m, expected):
    assert attention_spec("astro", m_div=form).resolve_m_div(width=width, m=m) == expected


def test_a_presets_factor_replaces_paper_only():
    astro = VARIANTS["astro"].with_paper_factor(100.0)
    assert astro.m_div == "100D" and astro.resolve_m_div(width=768, m=128) == 76800.0
    assert VARIANTS["linear"].with_paper_factor(100.0).m_div == 1.0
    assert attention_spec("astro", m_div="m").with_paper_factor(100.0).m_div == "m"


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "500E", "0D", True, 0, float("inf"), None])
def test_bad_m_div_lists_the_accepted_forms(bad):
    with pytest.raises(ValueError, match=r"m_div: expected one of 'paper', 'm', .*'500D'"):
        parse_m_div(bad)


def test_bad_fields_and_astro_settings_on_other_kernels_are_clear_errors():
    with pytest.raises(ValueError, match=r"\['alphaa'\] are not attention settings; allowed"):
        attention_spec("astro", alphaa=1.0)
    for name in ("softmax", "none"):
        with pytest.raises(ValueError, match="astro-family variants only"):
            attention_spec(name, alpha=0.5)
    with pytest.raises(ValueError, match=r"^alpha: expected > 0"):
        attention_spec("astro", alpha=-1.0)
    with pytest.raises(ValueError, match=r"kernel: expected one of"):
        AttentionSpec(kernel="flash")
    with pytest.raises(ValueError, match=r"implementation: expected one of \('xla', 'pallas'\)"):
        attention_spec("astro", implementation="triton")
    with pytest.raises(ValueError, match=r"implementation: expected 'xla' with mode='recurrent'"):
        attention_spec("astro", implementation="pallas", mode="recurrent")
    with pytest.raises(ValueError, match="needs an astro-family spec"):
        AstroAttention(8, 2, max_len=4, attention="softmax", rngs=nnx.Rngs(0))


def test_layer_resolves_m_div_with_its_own_widths():
    layer = AstroAttention(8, 2, max_len=4, attention="astro", m_div="3D", rngs=nnx.Rngs(0))
    assert layer.m_div == 24.0
    rf = AstroAttention(8, 2, max_len=4, attention="kozachkov_rf", num_features=6, m_div="m",
                        rngs=nnx.Rngs(0))
    assert rf.m_div == 6.0  # the state width: 6 random features, not q's 4


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_none_block_is_the_ffn_only_block_and_has_no_attention_parameters(norm):
    D, T = 8, 5
    block = TransformerBlock(D, 2, max_len=T, attention="none", norm=norm, rngs=nnx.Rngs(0))
    assert isinstance(block.attention, NoAttention)
    assert not jax.tree.leaves(nnx.state(block.attention, nnx.Param))
    x = jax.random.normal(jax.random.key(0), (2, T, D), jnp.float32)
    # The FFN-only block, written out: the attention residual adds nothing.
    if norm == "post":
        h = block.norm1(x)
        expected = block.norm2(h + block.ffn(h))
    else:
        expected = x + block.ffn(block.norm2(x))
    np.testing.assert_array_equal(np.asarray(block(x)), np.asarray(expected))
    _, calcium = block(x, return_calcium=True)
    assert calcium is None
    # Decoding runs through the same interface.
    causal = TransformerBlock(D, 2, max_len=T, attention="none", norm=norm, causal=True,
                              rngs=nnx.Rngs(0))
    _, state = causal.prefill(x[:, :2])
    y_t, state = causal.step(x[:, 2], state)
    assert int(state.position) == 3
    assert_close(y_t, causal(x)[:, 2], rtol=1e-6)
