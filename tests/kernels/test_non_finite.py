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
from astroflax.kernels.astro import api, running_sum
from tests.helpers import random_qkv

T, BAD = 8, 5  # token 5 of 8 is corrupted; rows 0..4 must not notice
VALUES = (jnp.nan, jnp.inf, -jnp.inf, 3e38)  # 3e38: finite in float32, overflows in x·v


def _corrupt(x, value):
    return x.at[:, BAD].set(value)  # every head and feature of token BAD, in every example


@pytest.mark.parametrize(("mode", "chunk_size", "sigmoid", "token_scan"), [
    ("parallel", 64, True, True), ("parallel", 64, True, False), ("parallel", 64, False, True),
    ("chunk", 4, True, True), ("chunk", 4, True, False), ("chunk", 4, False, True),
    ("chunk", 2, True, True), ("recurrent", 64, True, True), ("recurrent", 64, False, True),
])
def test_later_non_finite_token_leaves_earlier_rows_unchanged(monkeypatch, mode, chunk_size,
                                                               sigmoid, token_scan):
    # token_scan=False: the materialised prefix states of GPU/TPU backends (the CPU scans).
    monkeypatch.setattr(api, "scans_tokens_on_this_backend", lambda: token_scan)
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


@pytest.mark.parametrize("length", [1, 3, 7, 10, 29])   # below, at and past block multiples
@pytest.mark.parametrize("reverse", [False, True])
def test_running_sum_is_numpy_cumsum_and_strictly_ordered(length, reverse):
    x = np.random.default_rng(length).normal(size=(length, 2))
    want = np.cumsum(x[::-1], axis=0)[::-1] if reverse else np.cumsum(x, axis=0)
    got = np.asarray(running_sum(jnp.asarray(x), reverse=reverse, block=3))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # A NaN in row j reaches rows >= j only (rows <= j with reverse), never the others.
    j = length // 2
    poisoned = np.asarray(running_sum(jnp.asarray(x).at[j].set(jnp.nan), reverse=reverse,
                                      block=3))
    untouched = slice(j + 1, None) if reverse else slice(0, j)
    np.testing.assert_array_equal(poisoned[untouched], got[untouched])
    assert np.all(np.isnan(poisoned[: j + 1] if reverse else poisoned[j:]))
