"""Strict causality under non-finite input: a later token never reaches an earlier output.

A causal kernel that masks the future by multiplying with a 0/1 matrix turns a later token's
``inf`` (or an overflow of a huge finite value) into ``0 · inf = NaN`` in every earlier row.
Each mode must keep rows before the corrupted token finite and bit-identical to the output
on clean input, whatever the corrupted value.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from astroflax.kernels import astro_attention, linear_attention
from tests.helpers import random_qkv

T, BAD = 8, 5  # token 5 of 8 is corrupted; rows 0..4 must not notice
VALUES = (jnp.nan, jnp.inf, -jnp.inf, 3e38)  # 3e38: finite in float32, overflows in x·v


def _corrupt(x, value):
    return x.at[:, BAD].set(value)  # every head and feature of token BAD, in every example


@pytest.mark.parametrize(("mode", "chunk_size", "sigmoid"), [
    ("parallel", 64, True), ("parallel", 64, False),
    ("chunk", 4, True), ("chunk", 4, False), ("chunk", 2, True),
    ("recurrent", 64, True), ("recurrent", 64, False),
])
def test_later_non_finite_token_leaves_earlier_rows_unchanged(mode, chunk_size, sigmoid):
    q, k, v, pos = random_qkv(3, B=2, T=T, H=2, m=4, d=3, dtype=jnp.float32)

    def run(q, k, v, pos):
        return astro_attention(q, k, v, causal=True, sigmoid=sigmoid, pos_keys=pos, mode=mode,
                               chunk_size=chunk_size)

    clean = np.asarray(run(q, k, v, pos))
    assert np.all(np.isfinite(clean))
    for value in VALUES:
        for name in ("q", "k", "v", "pos"):
            args = dict(q=q, k=k, v=v, pos=pos)
            args[name] = args[name].at[BAD].set(value) if name == "pos" else _corrupt(
                args[name], value)
            out = np.asarray(run(**args))
            np.testing.assert_array_equal(out[:, :BAD], clean[:, :BAD],
                                          err_msg=f"{name}[{BAD}] = {value}")
            if name == "v" and np.isnan(value):
                assert np.all(np.isnan(out[:, BAD:])), "a NaN value must reach rows >= BAD"


def test_linear_attention_causal_value_inf_stays_in_the_future():
    q, k, v, _ = random_qkv(4, B=1, T=T, H=1, m=4, d=3, dtype=jnp.float32)
    clean = np.asarray(linear_attention(q, k, v, causal=True, mode="parallel"))
    out = np.asarray(linear_attention(q, k, _corrupt(v, jnp.inf), causal=True, mode="parallel"))
    np.testing.assert_array_equal(out[:, :BAD], clean[:, :BAD])
    # Rows that see v = +inf with positive scores are +inf, as in the direct formula.
    assert np.all(out[:, BAD:] == np.inf)
