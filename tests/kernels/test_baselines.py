"""Softmax and random-feature baselines against their definitions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroflax.kernels import (
    astro_attention,
    draw_random_projection,
    elu1,
    positive_random_features,
    softmax_attention,
)
from astroflax.kernels.astro.naive import naive_astro_attention_head
from tests.helpers import assert_close, normal, padding_mask, random_qkv


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_wrapper_equals_dot_product_attention_and_the_formula(causal):
    q, k, v, _ = random_qkv(0, T=11, m=4, d=4, dtype=jnp.float32)
    out = softmax_attention(q, k, v, causal=causal)
    with jax.numpy_dtype_promotion("standard"):
        assert_close(out, jax.nn.dot_product_attention(q, k, v, is_causal=causal), rtol=0)
    q, k, v = (x.astype(jnp.float64) for x in (q, k, v))
    logits = jnp.einsum("bihn,bthn->bhit", q, k) / 2.0
    if causal:
        logits = jnp.where(jnp.tril(jnp.ones((11, 11), bool)), logits, -jnp.inf)
    direct = jnp.einsum("bhit,bthd->bihd", jax.nn.softmax(logits, axis=-1), v)
    assert_close(out, direct, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.bfloat16])
def test_softmax_works_under_strict_promotion_in_float64_and_bfloat16(dtype):
    q, k, v, _ = random_qkv(2, T=6, m=4, d=4, dtype=jnp.float32)
    out = softmax_attention(*(x.astype(dtype) for x in (q, k, v)), causal=True)
    assert out.dtype == dtype
    ref = softmax_attention(q, k, v, causal=True)
    assert_close(out.astype(jnp.float32), ref, rtol=1e-6 if dtype == jnp.float64 else 3e-2)


def test_softmax_padding_mask_ignores_padding_keys():
    q, k, v, _ = random_qkv(1, T=9, m=4, d=4, dtype=jnp.float32)
    mask = padding_mask(2, 9, [5, 9])
    out = softmax_attention(q, k, v, mask=mask)
    alone = softmax_attention(q[:1, :5], k[:1, :5], v[:1, :5])
    assert_close(out[:1, :5], alone, rtol=1e-6)
    assert jnp.all(out[0, 5:] == 0)


def test_elu1_is_elu_plus_one_and_positive():
    x = jnp.linspace(-50, 50, 1001, dtype=jnp.float64)
    assert_close(elu1(x), jax.nn.elu(x) + 1.0, rtol=1e-15)
    assert jnp.all(elu1(x) > 0)
    g = jax.grad(lambda x: jnp.sum(elu1(x)))(x)
    assert_close(g, jnp.where(x > 0, 1.0, jnp.exp(x)), rtol=1e-15)


def test_random_features_estimate_the_softmax_kernel():
    # E[φ(q)·φ(k)] = exp(q·k/sqrt(n)) (Performer, Lemma 1); with many orthogonal features the
    # estimate is within a few percent (a biased projection, e.g. QR without the sign fix, is not).
    n = 8
    q, k = jax.random.normal(jax.random.key(2), (2, 16, n), jnp.float64) * 0.5
    W = draw_random_projection(jax.random.key(3), 16384, n, dtype=jnp.float64)
    approx = positive_random_features(q, W) @ positive_random_features(k, W).T
    exact = jnp.exp(q @ k.T / np.sqrt(n))
    relative = jnp.abs(approx / exact - 1)
    assert float(jnp.mean(relative)) < 0.02 and float(jnp.max(relative)) < 0.1


def test_orthogonal_projection_rows_are_orthogonal_within_a_block():
    W = draw_random_projection(jax.random.key(4), 8, 8, dtype=jnp.float64)
    gram = W @ W.T
    off_diagonal = gram - jnp.diag(jnp.diag(gram))
    assert float(jnp.max(jnp.abs(off_diagonal))) < 1e-10


@pytest.mark.parametrize(("per_head", "causal", "mode", "alpha", "sigmoid"), [
    (False, True, "chunk", 1.0, False),     # kozachkov_rf as configured in the zoo
    (True, True, "chunk", 1.0, False),
    (True, False, "parallel", 0.25, True),  # random features with the astrocyte on
    (True, True, "parallel", 0.25, True),
    (False, True, "recurrent", 0.25, False),
])
def test_random_feature_attention_matches_naive(per_head, causal, mode, alpha, sigmoid):
    q, k, v, _ = random_qkv(5, T=13, H=2, m=4, d=3)
    mask = padding_mask(2, 13, [13, 9])
    keys = jax.random.split(jax.random.key(6), 2)
    W = jnp.stack([draw_random_projection(kk, 6, 4, dtype=jnp.float64) for kk in keys])
    projection = W if per_head else W[0]
    pos = normal(7, (13, 2, 6))  # state width 6
    kw = dict(causal=causal, alpha=alpha, sigmoid=sigmoid)
    out = astro_attention(q, k, v, pos_keys=pos, mask=mask, feature_map="random_features",
                          projection=projection, mode=mode, chunk_size=4, **kw)
    per_head_W = W if per_head else jnp.stack([W[0], W[0]])
    assert_close(out, _random_feature_reference(q, k, v, pos, mask, per_head_W, alpha,
                                                causal=causal, sigmoid=sigmoid), rtol=1e-12)


@functools.partial(jax.jit, static_argnames=("causal", "sigmoid"))
def _random_feature_reference(q, k, v, pos, mask, W, alpha, *, causal, sigmoid):
    # The naive formula per head with that head's random features W [H, M, n] (alpha traced:
    # one program per causal and sigmoid).
    def one_head(q, k, v, pos, W, mask):
        return naive_astro_attention_head(
            positive_random_features(q, W), positive_random_features(k, W), v,
            jax.nn.elu(pos) + 1.0, mask, causal=causal, alpha=alpha, sigmoid=sigmoid, m_div=6.0,
            eps=1e-6)

    over_heads = jax.vmap(one_head, in_axes=(1, 1, 1, 1, 0, None), out_axes=1)
    return jax.vmap(over_heads, in_axes=(0, 0, 0, None, None, 0))(q, k, v, pos, W, mask)


@pytest.mark.parametrize("d", [3, 6])   # narrower and wider than n = 4
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_value_width_may_differ_from_query_width(d, causal):
    q, k, v, _ = random_qkv(8, T=7, m=4, d=d)
    mask = padding_mask(2, 7, [7, 5])
    out = softmax_attention(q, k, v, causal=causal, mask=mask)
    assert out.shape == v.shape
    logits = jnp.einsum("bihn,bthn->bhit", q, k) / 2.0   # default scale 1/sqrt(n), n = 4
    visible = mask[:, None, None, :]
    if causal:
        visible = visible & jnp.tril(jnp.ones((7, 7), bool))
    weights = jax.nn.softmax(jnp.where(visible, logits, -jnp.inf), axis=-1)
    direct = jnp.where(mask[:, :, None, None], jnp.einsum("bhit,bthd->bihd", weights, v), 0)
    # dot_product_attention's softmax runs in float32 inside (as in the first test above).
    assert_close(out, direct, rtol=1e-6)
