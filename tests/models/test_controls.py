"""The study's controls: m_div forms, positional choices, token-embedding scale, causal=False."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroflax.models import count_params, create_model
from astroflax.nn import AstroAttention
from tests.helpers import assert_close

VOCAB = 50


def tokens(B=1, T=8, seed=0):
    # NumPy draws: a jax.random draw of a new shape is an XLA program to compile.
    return jnp.asarray(np.random.default_rng(seed).integers(1, VOCAB, (B, T)).astype(np.int32))


def first_attention(model):
    return model.trunk.stack.blocks[0].attention


@pytest.mark.parametrize(("variant", "m_div", "expected"), [
    ("astro", None, 500 * 16),          # tiny_imdb: D = 16, the preset's 500·D
    ("astro", "paper", 500 * 16),
    ("astro", "m", 8),                  # m = D / H = 16 / 2
    ("astro", "64000", 64000),
    ("astro", "2.5D", 40),
    ("kozachkov_iso", "m", 8),
    ("linear", "paper", 1),             # the variant's own rule
    ("linear", "500D", 8000),
])
def test_m_div_forms_reach_the_layer(variant, m_div, expected):
    model = nnx.eval_shape(lambda: create_model("tiny_imdb", attention=variant, m_div=m_div))
    assert first_attention(model).m_div == expected


@pytest.mark.parametrize(("pos_embedding", "variant", "kind"), [
    ("paper", "astro", "none"), ("paper", "astro_no_nonlin", "none"),
    ("paper", "softmax", "sinusoidal"), ("paper", "linear", "sinusoidal"),
    ("paper", "none", "sinusoidal"),
    ("none", "softmax", "none"), ("sinusoidal", "astro", "sinusoidal"),
    ("learned", "astro", "learned"), ("learned", "softmax", "learned"),
])
def test_pos_embedding_choice_applies_to_every_variant_alike(pos_embedding, variant, kind):
    model = nnx.eval_shape(lambda: create_model("tiny_wikitext2", attention=variant,
                                                pos_embedding=pos_embedding))
    assert model.trunk.pos_embedding == kind
    assert (model.trunk.positions is None) == (kind == "none")
    # The astrocytic term belongs to the variant, whatever the absolute choice.
    assert (getattr(first_attention(model), "pos_M", None) is not None) == (
        variant in ("astro", "astro_no_nonlin"))


def test_learned_table_starts_at_std_002_and_adds_t_max_by_d_parameters():
    size = {"max_len": 256, "features": 64, "num_layers": 1}
    learned = create_model("tiny_wikitext2", attention="softmax", pos_embedding="learned",
                           **size)
    table = np.asarray(learned.trunk.positions.table[...])
    assert table.shape == (256, 64)
    assert abs(table.std() - 0.02) < 0.0005  # 16 384 draws: standard error ~1e-4
    sinusoidal = nnx.eval_shape(lambda: create_model("tiny_wikitext2", attention="softmax",
                                                     **size))
    assert count_params(learned) - count_params(sinusoidal) == 256 * 64


def test_bad_pos_embedding_and_embed_scale_list_the_choices():
    with pytest.raises(ValueError, match=r"pos_embedding: expected one of \('paper'"):
        create_model("tiny_wikitext2", pos_embedding="auto")
    with pytest.raises(ValueError, match=r"embed_scale: expected one of \('sqrt_d', 'one'\)"):
        create_model("tiny_wikitext2", embed_scale="sqrt")
    with pytest.raises(ValueError, match=r"does not accept \['embed_scale'\]"):
        create_model("tiny_cifar10", embed_scale="one")  # patch models: no token embeddings


@pytest.mark.parametrize("name", ["tiny_wikitext2", "tiny_imdb"])
def test_sqrt_d_scale_multiplies_token_embeddings_by_sqrt_d(name):
    scaled = create_model(name, pos_embedding="sinusoidal")  # the default: "sqrt_d"
    plain = create_model(name, pos_embedding="sinusoidal", embed_scale="one")
    t = tokens(B=2, T=8)
    # Same seed, same parameters: the scaled model is the plain one fed 4·E[t] (√16 = 4).
    if name == "tiny_wikitext2":
        expected = plain.logits_from_embeddings(plain.embed(t) * 4.0)[0]
    else:
        h, _ = plain.trunk(plain.embed(t) * 4.0, mask=t != 0)
        expected = plain.head(jnp.mean(h, axis=1))
    assert_close(scaled(t)[0], expected, rtol=1e-5)
    assert not np.allclose(np.asarray(plain(t)[0]), np.asarray(scaled(t)[0]))


def _jacobian(model, T=8):
    x = model.embed(tokens(T=T))
    # d sum(logits[0, i, :]) / d x[0, j, :]: [T, T, D] (jitted: one program, where eager reverse
    # mode through the model compiles each of its ops apart)
    return np.asarray(jax.jit(jax.jacrev(
        lambda x: jnp.sum(model.logits_from_embeddings(x)[0][0], axis=-1)))(x))[:, 0]


@pytest.mark.parametrize("variant", ["astro", "softmax"])
def test_non_causal_lm_sees_the_future_and_the_causal_one_does_not(variant, caplog):
    future = np.triu(np.ones((8, 8), bool), k=1)  # j > i
    causal = create_model("tiny_wikitext2", attention=variant)
    assert np.all(_jacobian(causal)[future] == 0)
    with caplog.at_level(logging.WARNING, logger="astroflax.models.lm"):
        seer = create_model("tiny_wikitext2", attention=variant, causal=False)
    assert "sees the future" in caplog.text
    assert np.all(np.any(_jacobian(seer)[future] != 0, axis=-1))
    with pytest.raises(ValueError, match="generate needs a causal model"):
        seer.generate(tokens(T=3), 2)


def test_positional_term_is_computed_once_per_generation(monkeypatch):
    model = create_model("tiny_wikitext2", attention="astro")
    calls = []
    original = AstroAttention.positional_keys

    def counted(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(AstroAttention, "positional_keys", counted)
    prompt = tokens(T=3)
    logits, states = model.prefill(prompt)
    logits_t = logits[:, -1]
    for _ in range(4):
        logits_t, states = model.step(jnp.argmax(logits_t, -1).astype(jnp.int32), states)
    assert len(calls) == 2  # once per layer (2 layers), in prefill; no step recomputes A
