"""The model zoo: every preset and variant runs, modes agree, the LM is causal and decodes right."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from astroflax.models import (
    PRESETS,
    AstroLM,
    AstroTextClassifier,
    AstroViT,
    count_params,
    create_model,
    list_models,
    model_kwargs,
)
from astroflax.nn import VARIANTS
from tests.helpers import assert_close

TINY = [n for n in list_models() if n.startswith("tiny_")]
#: Variants whose attention mixes tokens (``none`` is the FFN-only control).
MIXING = [v for v in VARIANTS if v != "none"]
VOCAB = 50


def inputs(name, B=2, T=12, seed=0):
    """Inputs and the documented logits shape of a tiny preset (NumPy draws: nothing to compile)."""
    rng = np.random.default_rng(seed)
    if "cifar" in name:
        return jnp.asarray(rng.standard_normal((B, 8, 8, 3)).astype(np.float32)), (B, 10)
    tokens = jnp.asarray(rng.integers(1, VOCAB, (B, T)).astype(np.int32))
    return tokens, ((B, 2) if "imdb" in name else (B, T, VOCAB))


#: Every variant on the language model (causal, the deepest path: embeddings, decoder, tied
#: head); every other preset with the variants that differ in what they add to the trunk
#: (astro's positional term and calcium, the random-feature projection, softmax), each
#: non-causal there. The attention module does not depend on the preset, so the full cross
#: product repeats it; ``none`` (no attention: the same FFN trunk whatever the preset) runs on
#: the language model only, the other presets' embeddings and heads being covered by the rest.
PRESET_VARIANTS = ([("tiny_wikitext2", v) for v in VARIANTS]
                   + [(n, v) for n in TINY if n != "tiny_wikitext2"
                      for v in ("astro", "kozachkov_rf", "softmax")])


@pytest.mark.parametrize(("name", "variant"), PRESET_VARIANTS)
def test_tiny_preset_runs_forward_and_backward_under_jit_with_finite_outputs(name, variant):
    model = create_model(name, attention=variant)
    x, shape = inputs(name)

    @nnx.jit
    def loss_and_grads(model, x):
        def loss(model):
            logits, aux = model(x, capture_calcium=True)
            return jnp.mean(logits ** 2), (logits, aux)
        return nnx.value_and_grad(loss, has_aux=True)(model)

    (_, (logits, aux)), grads = loss_and_grads(model, x)
    assert logits.shape == shape
    assert np.all(np.isfinite(logits))
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.all(np.isfinite(g)) for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0
    T = 16 if "cifar" in name else 12
    assert len(aux["calcium"]) == PRESETS[name][1]["num_layers"]
    for c in aux["calcium"]:
        if VARIANTS[variant].kernel != "astro":
            assert c is None
        else:
            assert c.shape == (2, T, PRESETS[name][1]["num_heads"]) and np.all(c > 0)


@pytest.mark.parametrize("variant", ["astro", "astro_no_nonlin", "kozachkov_rf"])
def test_parallel_chunk_and_recurrent_modes_agree_inside_the_lm(variant):
    tokens, _ = inputs("tiny_wikitext2", T=14)
    out = {mode: create_model("tiny_wikitext2", attention=variant, mode=mode)(tokens)[0]
           for mode in ("parallel", "chunk", "recurrent")}
    assert_close(out["chunk"], out["parallel"], rtol=2e-5, name="chunk")
    assert_close(out["recurrent"], out["parallel"], rtol=2e-5, name="recurrent")


@pytest.mark.parametrize("variant", MIXING)
def test_lm_is_strictly_causal_end_to_end(variant):
    model = create_model("tiny_wikitext2", attention=variant)
    tokens, _ = inputs("tiny_wikitext2", B=1, T=11)
    x = model.embed(tokens)

    # d logits[0, i, :].sum() / d x[0, j, :] for every i: [T, 1, T, D] (jitted: one program,
    # where eager reverse mode through the model compiles each of its ops apart)
    jac = jax.jit(jax.jacrev(lambda x: jnp.sum(model.logits_from_embeddings(x)[0][0], axis=-1)))(x)
    T = x.shape[1]
    future = np.triu(np.ones((T, T), bool), k=1)  # j > i
    assert np.all(np.asarray(jac)[:, 0][future] == 0), "a future input reaches an output"
    past = np.tril(np.ones((T, T), bool))
    assert np.all(np.any(np.asarray(jac)[:, 0][past] != 0, axis=-1)), "a past input is ignored"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_generate_equals_argmax_of_repeated_full_forwards(variant):
    model = create_model("tiny_wikitext2", attention=variant)
    prompt, _ = inputs("tiny_wikitext2", B=2, T=4, seed=3)
    generated = model.generate(prompt, 6, temperature=0.0)
    assert generated.shape == (2, 10)
    np.testing.assert_array_equal(generated[:, :4], prompt)
    # The full forward pass on prompt + generated[:t] would give, at its last position, the
    # logits at position t-1 of one full pass over the whole generated sequence: the LM is
    # strictly causal (test above), so later tokens cannot change them. One pass checks all.
    logits, _ = nnx.jit(lambda m, t: m(t))(model, generated)
    np.testing.assert_array_equal(jnp.argmax(logits[:, 3:-1], -1), generated[:, 4:])


def test_top_1_sampling_is_greedy_and_sampling_stays_in_the_top_k():
    model = create_model("tiny_wikitext2")
    prompt, _ = inputs("tiny_wikitext2", B=2, T=3)
    greedy = model.generate(prompt, 5)
    top1 = model.generate(prompt, 5, temperature=1.0, top_k=1, rng=jax.random.key(7))
    np.testing.assert_array_equal(top1, greedy)
    sampled = model.generate(prompt, 1, temperature=1.0, top_k=3, rng=jax.random.key(8))
    top3 = jax.lax.top_k(model(prompt)[0][:, -1], 3)[1]
    assert all(int(sampled[b, -1]) in np.asarray(top3[b]).tolist() for b in range(2))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_text_classifier_output_is_unchanged_by_appended_padding(variant):
    model = create_model("tiny_imdb", attention=variant)
    tokens, _ = inputs("tiny_imdb", B=2, T=9)
    tokens = tokens.at[1, 6:].set(0)  # the second example is already padded
    padded = jnp.concatenate([tokens, jnp.zeros((2, 7), jnp.int32)], axis=1)  # T = 16 = T_max
    forward = nnx.jit(lambda model, tokens: model(tokens)[0])  # one program per length
    assert_close(forward(model, padded), forward(model, tokens), rtol=1e-5, name=variant)


def test_jitted_adamw_train_step_reduces_the_loss_on_a_fixed_batch():
    model = create_model("tiny_wikitext2")
    optimizer = nnx.Optimizer(model, optax.adamw(3e-3), wrt=nnx.Param)
    tokens, _ = inputs("tiny_wikitext2", B=4, T=16, seed=5)

    @nnx.jit
    def train_step(model, optimizer, tokens):
        def loss_fn(model):
            logits, _ = model(tokens[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    # optax's Adam bias correction mixes its int32 step count with Python floats, which strict
    # dtype promotion (tests/conftest.py) rejects; the model itself runs under strict promotion.
    with jax.numpy_dtype_promotion("standard"):
        losses = [float(train_step(model, optimizer, tokens)) for _ in range(8)]
    assert losses[-1] < losses[0] - 0.1, losses


#: Trainable parameters of each preset with the default attention (``astro``), pinned.
PARAM_COUNTS = {
    "paper_imdb": 6_288_262,
    "paper_cifar10": 7_114_570,
    "paper_wikitext2": 46_078_470,
    "tiny_imdb": 4_380,
    "tiny_cifar10": 8_734,
    "tiny_wikitext2": 7_876,
    "lra_image": 82_699,
    "lra_listops": 25_075_258,
    "lra_pathfinder": 197_970,
    "lra_retrieval": 3_269_138,
    "lra_text": 7_322_642,
    "mqar": 62_210,
    "small_listops": 101_394,
}


def test_parameter_counts_of_every_preset_are_pinned():
    counts = {}
    for name in list_models():
        counts[name] = count_params(nnx.eval_shape(lambda n=name: create_model(n)))
        print(f"{name}: {counts[name]:,} parameters")
    assert counts == PARAM_COUNTS


def test_paper_presets_have_the_shapes_of_spec_section_7():
    spec = {  # layers, heads, width, m_div, T_max
        "paper_imdb": (AstroTextClassifier, 1, 4, 128, 500 * 128, 400),
        "paper_cifar10": (AstroViT, 8, 8, 256, 500 * 256, 256),
        "paper_wikitext2": (AstroLM, 1, 6, 768, 100 * 768, 512),
    }
    for name, (cls, layers, heads, width, m_div, t_max) in spec.items():
        model = nnx.eval_shape(lambda n=name: create_model(n))
        assert isinstance(model, cls)
        blocks = model.trunk.stack.blocks
        attn = blocks[0].attention
        assert (len(blocks), attn.num_heads, attn.features, attn.m_div, attn.max_len) == (
            layers, heads, width, m_div, t_max), name
        assert blocks[0].norm == "post" and attn.variant == "astro"
        assert (attn.alpha, attn.sigmoid, attn.positional) == (0.25, True, True)
    lm = nnx.eval_shape(lambda: create_model("paper_wikitext2"))
    assert lm.vocab_size == 50_257 and lm.trunk.stack.blocks[0].attention.causal


def test_m_div_follows_the_width_and_variants_that_fix_it_keep_theirs():
    # Built abstractly (nnx.eval_shape): the constructors run, no parameter is drawn.
    wide = nnx.eval_shape(lambda: create_model("tiny_imdb", features=32))
    assert wide.trunk.stack.blocks[0].attention.m_div == 500 * 32
    assert model_kwargs("tiny_imdb", m_div=3.0)[1]["attention"].m_div == 3.0
    lin = nnx.eval_shape(lambda: create_model("tiny_imdb", attention="linear"))
    assert lin.trunk.stack.blocks[0].attention.m_div == 1.0


def test_pre_ln_option_adds_a_final_norm_and_runs():
    model = create_model("tiny_wikitext2", norm="pre")
    assert model.trunk.stack.final_norm is not None
    tokens, shape = inputs("tiny_wikitext2")
    assert model(tokens)[0].shape == shape


def test_unknown_preset_and_override_errors_list_what_is_allowed():
    with pytest.raises(ValueError, match=r"'paper_mnist'; allowed: \[.*'paper_cifar10'"):
        create_model("paper_mnist")
    with pytest.raises(ValueError, match=r"does not accept \['layers'\]; allowed: .*'num_layers'"):
        create_model("tiny_imdb", layers=3)
    with pytest.raises(ValueError, match=r"allowed: \['astro'"):
        create_model("tiny_imdb", attention="performer")


@pytest.mark.parametrize("name", TINY)
def test_inputs_longer_than_t_max_are_a_clear_error(name):
    model = create_model(name)
    # 10x10 images make 25 patches; 17 tokens: both exceed T_max = 16.
    x = jnp.zeros((1, 10, 10, 3), jnp.float32) if "cifar" in name else jnp.ones((1, 17), jnp.int32)
    with pytest.raises(ValueError, match=r"exceeds the model's max_len \(T_max\) 16; allowed"):
        model(x)


def test_generate_past_t_max_or_sampling_without_rng_is_a_clear_error():
    model = create_model("tiny_wikitext2")
    with pytest.raises(ValueError, match="max_len=16"):
        model.generate(jnp.ones((1, 10), jnp.int32), 7)
    with pytest.raises(ValueError, match="rng"):
        model.generate(jnp.ones((1, 2), jnp.int32), 3, temperature=1.0)


@pytest.mark.parametrize("variant", ["astro", "kozachkov_rf"])
def test_bfloat16_compute_runs_with_float32_params_and_decodes(variant):
    # (softmax is left out: jax.nn.dot_product_attention rejects bfloat16 under the suite's
    # strict dtype promotion.)
    model = create_model("tiny_wikitext2", attention=variant, dtype=jnp.bfloat16)
    tokens, shape = inputs("tiny_wikitext2")
    logits, _ = nnx.jit(lambda model, tokens: model(tokens))(model, tokens)  # one program
    assert logits.dtype == jnp.bfloat16 and logits.shape == shape
    assert np.all(np.isfinite(np.asarray(logits, np.float32)))
    assert model.generate(tokens[:, :3], 4).shape == (2, 7)
