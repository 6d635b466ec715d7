"""Classifier pooling (mean | cls) and the two-tower pair classifier of LRA Retrieval."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroflax.models import AstroPairClassifier, AstroTextClassifier, create_model
from tests.helpers import assert_close

KW = {"vocab_size": 20, "num_classes": 3, "max_len": 12, "features": 8, "num_layers": 1,
      "num_heads": 2, "attention": "softmax"}


def _tokens(key, B, T):
    return jax.random.randint(key, (B, T), 1, 20)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_appending_padding_leaves_the_logits_unchanged(pooling):
    model = AstroTextClassifier(**KW, pooling=pooling, rngs=nnx.Rngs(0))
    tokens = _tokens(jax.random.key(1), 2, 6)
    padded = jnp.concatenate([tokens, jnp.zeros((2, 5), tokens.dtype)], axis=1)
    # float32 parameters: equal up to float32 rounding of the longer sums
    assert_close(model(padded)[0], model(tokens)[0], rtol=1e-6, atol=1e-7)


def test_cls_pooling_reads_the_classification_token_a_mean_pooled_model_does_not_have():
    cls_model = AstroTextClassifier(**KW, pooling="cls", rngs=nnx.Rngs(0))
    mean_model = AstroTextClassifier(**KW, rngs=nnx.Rngs(0))
    assert "cls" in nnx.state(cls_model, nnx.Param) and "cls" not in nnx.state(mean_model)
    # The encoder holds one more position (the classification token's) than the tokens.
    assert cls_model.trunk.max_len == KW["max_len"] + 1
    tokens = _tokens(jax.random.key(2), 2, KW["max_len"])
    logits, _ = cls_model(tokens)                     # max_len tokens still fit
    assert logits.shape == (2, 3)
    # The output is the head at the classification token: moving that vector changes it.
    cls_model.cls[...] = cls_model.cls[...] + 1.0
    assert not np.allclose(cls_model(tokens)[0], logits)
    with pytest.raises(ValueError, match="exceeds the model's max_len"):
        cls_model(_tokens(jax.random.key(3), 1, KW["max_len"] + 1))
    with pytest.raises(ValueError, match=r"^pooling: expected one of"):
        AstroTextClassifier(**KW, pooling="max", rngs=nnx.Rngs(0))


def test_pair_classifier_is_lras_dual_head_on_two_separately_encoded_sequences():
    model = AstroPairClassifier(**KW, mlp_dim=10, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(4), (3, 2, 7), 1, 20)
    mask = jnp.ones(tokens.shape, bool).at[0, 1, 4:].set(False)
    logits, _ = model(tokens, mask=mask)
    # Reference: each sequence encoded alone, then [u, v, u*v, u-v] -> relu MLP by hand.
    u, _ = model.encode(tokens[:, 0], mask[:, 0])
    v, _ = model.encode(tokens[:, 1], mask[:, 1])
    h = model.head
    x = jnp.concatenate([u, v, u * v, u - v], -1)
    x = jax.nn.relu(x @ h.hidden1.kernel[...] + h.hidden1.bias[...])
    x = jax.nn.relu(x @ h.hidden2.kernel[...] + h.hidden2.bias[...])
    expected = x @ h.out.kernel[...] + h.out.bias[...]
    assert h.hidden1.kernel.shape == (4 * KW["features"], 10)
    assert h.hidden2.kernel.shape == (10, 5)
    assert_close(logits, expected, rtol=1e-10, atol=1e-12)
    # The second document's masked tail does not count.
    changed = tokens.at[0, 1, 4:].set(3)
    assert_close(model(changed, mask=mask)[0], logits, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"token pairs \[B, 2, T\]"):
        model(tokens[:, 0])


def test_create_model_passes_the_base_classifiers_arguments_to_the_pair_model():
    model = create_model("tiny_imdb", pooling="cls")
    assert isinstance(model, AstroTextClassifier) and model.pooling == "cls"
