"""Embeddings: GloVe loading and its errors, patches, absolute positions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroflax.data.glove import load_glove
from astroflax.nn import AbsolutePositions, FrozenEmbedding, PatchEmbedding, TokenEmbedding
from astroflax.nn.embed import sinusoidal_positions
from tests.helpers import assert_close


def write_glove(path, rows):
    path.write_text("".join(w + " " + " ".join(f"{x:.6f}" for x in v) + "\n" for w, v in rows))
    return path


def test_glove_file_initialises_known_tokens_and_keeps_random_rows_for_others(tmp_path):
    f = write_glove(tmp_path / "g.txt", [("the", [1, 2, 3]), ("Cat", [4, 5, 6]),
                                         (". . .", [7, 8, 9]), ("dog", [0, 0, 1])])
    vocab = ["<pad>", "the", "cat", ". . .", "zebra"]
    emb = TokenEmbedding(5, 3, rngs=nnx.Rngs(0))
    emb.load_vectors(*load_glove(f, vocab))
    table = np.asarray(emb.table[...])
    assert_close(table[1], [1, 2, 3], rtol=1e-6)
    assert_close(table[2], [4, 5, 6], rtol=1e-6)  # lower-cased match
    assert_close(table[3], [7, 8, 9], rtol=1e-6)  # a word with spaces
    random_rows = np.asarray(TokenEmbedding(5, 3, rngs=nnx.Rngs(0)).table[...])
    assert_close(table[[0, 4]], random_rows[[0, 4]], rtol=0)
    vectors, found = load_glove(f, vocab, 3)
    assert found.tolist() == [False, True, True, True, False]
    assert vectors.shape == (5, 3)


def test_glove_with_wrong_dimension_says_what_is_allowed(tmp_path):
    f = write_glove(tmp_path / "g.txt", [("the", [1, 2, 3, 4])])
    with pytest.raises(ValueError, match=r"dimension 4, but the embedding expects embed_dim=3"):
        load_glove(f, ["a", "the"], 3)
    emb = TokenEmbedding(2, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"dimension 4, but the embedding expects embed_dim=3"):
        emb.load_vectors(*load_glove(f, ["a", "the"]))


def test_glove_needs_a_vocabulary_of_vocab_size(tmp_path):
    f = write_glove(tmp_path / "g.txt", [("the", [1, 2, 3])])
    with pytest.raises(ValueError, match="needs vocab"):
        TokenEmbedding(2, 3, rngs=nnx.Rngs(0)).load_vectors(*load_glove(f, ["the"]))


def test_glove_width_differs_from_model_width_through_a_projection(tmp_path):
    f = write_glove(tmp_path / "g.txt", [("the", [1, 2, 3])])
    emb = TokenEmbedding(2, 5, embed_dim=3, freeze=True, rngs=nnx.Rngs(0))
    emb.load_vectors(*load_glove(f, ["a", "the"]))
    x = emb(jnp.array([[1, 0]]))
    W, b = emb.projection.kernel[...], emb.projection.bias[...]
    assert_close(x[0, 0], jnp.array([1.0, 2, 3], jnp.float32) @ W + b, rtol=1e-6)
    assert isinstance(emb.table, FrozenEmbedding)
    assert "table" not in nnx.state(emb, nnx.Param)


def test_patch_embedding_makes_one_token_per_patch():
    pe = PatchEmbedding(3, 8, patch_size=2, rngs=nnx.Rngs(0))
    out = pe(jnp.ones((2, 6, 4, 3), jnp.float32))
    assert out.shape == (2, 6, 8)
    # Without the stem, a patch token is a linear map of that patch alone.
    pe = PatchEmbedding(3, 8, patch_size=2, stem=False, rngs=nnx.Rngs(0))
    img = jax.random.normal(jax.random.key(0), (1, 4, 4, 3), jnp.float32)
    patch = img[0, 2:4, 0:2].reshape(-1)  # token 2 = patch row 1, col 0
    W = pe.patch.kernel[...].reshape(-1, 8)
    assert_close(pe(img)[0, 2], patch @ W + pe.patch.bias[...], rtol=1e-5)
    with pytest.raises(ValueError, match="divisible by patch_size=2"):
        pe(jnp.ones((1, 5, 4, 3), jnp.float32))


def test_sinusoidal_table_is_the_transformer_formula():
    table = np.asarray(sinusoidal_positions(5, 6, jnp.float64))
    pos, i = 3, 2
    assert math.isclose(table[pos, 2 * i], math.sin(pos / 10000 ** (2 * i / 6)), rel_tol=1e-12)
    assert math.isclose(table[pos, 2 * i + 1], math.cos(pos / 10000 ** (2 * i / 6)),
                        rel_tol=1e-12)


def test_absolute_positions_from_an_offset_equal_the_slice():
    ap = AbsolutePositions(10, 4, kind="learned", rngs=nnx.Rngs(0))
    x = jnp.zeros((1, 3, 4), jnp.float32)
    assert_close(ap(x, start=jnp.asarray(5, jnp.int32))[0], ap.table[...][5:8], rtol=0)
