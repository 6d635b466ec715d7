"""Identities of astromorphic attention: special cases, causality, split/resume, transforms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroflax.kernels import (
    AstroState,
    ReadParams,
    astro_attention,
    astro_step,
    linear_attention,
)
from astroflax.kernels.astro import empty_state
from astroflax.kernels.astro.api import _astro_attention
from astroflax.kernels.linear.naive import naive_linear_attention
from tests.helpers import assert_close, padding_mask, random_qkv

CAUSAL_AND_MODE = [(False, "parallel"), (True, "parallel"), (True, "chunk"), (True, "recurrent")]


@pytest.mark.parametrize(("causal", "mode"), CAUSAL_AND_MODE)
def test_alpha1_no_sigmoid_no_pos_mdiv1_is_linear_attention(causal, mode):
    q, k, v, _ = random_qkv(0, T=37, m=6, d=4)
    mask = padding_mask(2, 37, [37, 20])
    out = astro_attention(q, k, v, causal=causal, alpha=1.0, sigmoid=False, m_div=1.0, eps=0.0,
                          mask=mask, mode=mode, chunk_size=8)
    assert_close(out, naive_linear_attention(q, k, v, causal=causal, mask=mask), rtol=1e-12)
    wrapped = linear_attention(q, k, v, causal=causal, mask=mask, mode=mode, chunk_size=8, eps=0.0)
    assert_close(wrapped, out, rtol=0)


def test_hand_computed_single_head():
    # T=2, m=1, d=1, q=k=0 so φ = 1; v = (1, 3). Non-causal: S = 4, z = 2.
    # out = σ(4 / m_div) / (1 · 2**alpha) with m_div = 2, alpha = 0.5: σ(2) / sqrt(2).
    q = jnp.zeros((1, 2, 1, 1), jnp.float64)
    v = jnp.array([1.0, 3.0], jnp.float64).reshape(1, 2, 1, 1)
    out = astro_attention(q, q, v, alpha=0.5, m_div=2.0, eps=0.0)
    expected = (1 / (1 + np.exp(-2.0))) / np.sqrt(2.0)
    np.testing.assert_allclose(np.asarray(out).ravel(), [expected, expected], rtol=1e-14)
    # Causal, first token: S = 1, z = 1 -> σ(0.5).
    causal = astro_attention(q, q, v, causal=True, alpha=0.5, m_div=2.0, eps=0.0)
    np.testing.assert_allclose(float(causal[0, 0, 0, 0]), 1 / (1 + np.exp(-0.5)), rtol=1e-14)


@pytest.mark.parametrize(("mode", "sigmoid"), [("parallel", True), ("parallel", False),
                                               ("chunk", True), ("chunk", False),
                                               ("recurrent", True)])
def test_causal_is_leak_free(mode, sigmoid):
    T, positions = 21, (0, 7, 8, 15, 20)
    q, k, v, pos = random_qkv(1, B=1, T=T, H=1, m=4, d=3)

    def outs(q, k, v):  # [len(positions)]: out[0, i] summed over heads and features
        o = astro_attention(q, k, v, causal=True, sigmoid=sigmoid, pos_keys=pos, mode=mode,
                            chunk_size=8)
        return jnp.sum(o[0, np.asarray(positions)], axis=(-2, -1))

    # One jitted reverse-mode Jacobian: row r is d out[positions[r]] / d (q, k, v).
    jac = jax.jit(jax.jacrev(outs, argnums=(0, 1, 2)))(q, k, v)
    for r, i in enumerate(positions):
        for name, g in zip("qkv", jac, strict=True):
            g = np.asarray(g[r])
            future = g[0, i + 1:]
            assert np.all(future == 0), f"d out[{i}] / d {name}[j>{i}] is not exactly zero"
            assert np.any(g[0, : i + 1] != 0), f"no gradient to the past of {name}"


@pytest.mark.parametrize(("causal", "mode"), CAUSAL_AND_MODE)
@pytest.mark.parametrize("split", [1, 13, 16])
def test_split_and_resume_equals_one_call(causal, mode, split):
    T = 29
    # NumPy inputs: their slices below are not XLA programs (an eager jnp slice is one per shape).
    q, k, v, pos = (np.asarray(a) for a in random_qkv(2, T=T))
    mask = np.asarray(padding_mask(2, T, [T, 22]))
    kw = dict(causal=causal, pos_keys=None, mode=mode, chunk_size=8, return_state=True)
    full, full_state = astro_attention(q, k, v, mask=mask, **{**kw, "pos_keys": pos})
    out1, state1 = astro_attention(q[:, :split], k[:, :split], v[:, :split], mask=mask[:, :split],
                                   **{**kw, "pos_keys": pos[:split]})
    out2, state2 = astro_attention(q[:, split:], k[:, split:], v[:, split:], mask=mask[:, split:],
                                   initial_state=state1, **{**kw, "pos_keys": pos[split:]})
    assert_close(state2.S, full_state.S, name="S")
    assert_close(state2.z, full_state.z, name="z")
    if causal:  # a non-causal query sees the whole sequence; its split halves see less
        assert_close(np.concatenate([out1, out2], axis=1), full, name="out")


def test_scanning_astro_step_equals_recurrent_mode_and_chunk_and_parallel():
    T, m, d = 19, 4, 3
    q, k, v, pos = random_qkv(3, B=1, T=T, H=1, m=m, d=d)
    params = ReadParams(alpha=0.25, sigmoid=True, m_div=float(m), eps=1e-6)
    state = empty_state(m, d, jnp.float64)
    # Jitted, so the loop runs one compiled step (eagerly, each of its ops is compiled apart);
    # indexed in NumPy for the same reason.
    step = jax.jit(functools.partial(astro_step, params=params))
    qn, kn, vn, pn = (np.asarray(a) for a in (q, k, v, pos))
    outs = []
    for t in range(T):
        y, state = step(state, qn[0, t, 0], kn[0, t, 0], vn[0, t, 0], pn[t, 0])
        outs.append(np.asarray(y))
    stepped = np.stack(outs)[None, :, None]
    modes = {mode: astro_attention(q, k, v, causal=True, pos_keys=pos, mode=mode, chunk_size=4)
             for mode in ("recurrent", "chunk", "parallel")}
    assert_close(stepped, modes["recurrent"], name="astro_step vs recurrent")
    assert_close(modes["chunk"], modes["recurrent"], name="chunk vs recurrent")
    assert_close(modes["parallel"], modes["recurrent"], name="parallel vs recurrent")


def test_masked_step_leaves_state_unchanged_and_outputs_zero():
    params = ReadParams()
    state = AstroState(S=jnp.ones((3, 2), jnp.float64), z=jnp.ones((3,), jnp.float64))
    x = jnp.ones((3,), jnp.float64)
    y, new = astro_step(state, x, x, jnp.ones((2,), jnp.float64), params=params,
                        mask=jnp.asarray(False))
    assert np.all(np.asarray(y) == 0)
    assert_close(new.S, state.S, rtol=0)
    assert_close(new.z, state.z, rtol=0)


def test_jit_vmap_grad_compose():
    q, k, v, pos = random_qkv(4, B=3, T=9)

    def per_example(q, k, v):  # one example, with a batch axis of 1 for the public API
        return astro_attention(q[None], k[None], v[None], causal=True, pos_keys=pos,
                               mode="chunk", chunk_size=4)[0]

    vmapped = jax.jit(jax.vmap(per_example))(q, k, v)
    assert_close(vmapped, astro_attention(q, k, v, causal=True, pos_keys=pos, mode="chunk",
                                          chunk_size=4), name="vmap")
    grad = jax.jit(jax.grad(lambda q: jnp.sum(jax.vmap(per_example)(q, k, v) ** 2)))(q)
    direct = jax.grad(lambda q: jnp.sum(astro_attention(q, k, v, causal=True, pos_keys=pos,
                                                        mode="chunk", chunk_size=4) ** 2))(q)
    assert_close(grad, direct, name="jit(grad(vmap))")


@pytest.mark.parametrize("causal", [False, True])
def test_bfloat16_inputs_stay_close_to_float32(causal):
    # bf16 has an 8-bit mantissa (relative rounding 2**-9 ≈ 2e-3 per input); with sums in
    # float32 the outputs stay within 1e-2 of the float32 result, relative to its scale
    # (measured: 4.4e-3 non-causal, 2.9e-3 causal).
    q, k, v, pos = random_qkv(5, T=300, H=2, m=16, d=16, dtype=jnp.float32)
    ref = astro_attention(q, k, v, causal=causal, pos_keys=pos)
    cast = [x.astype(jnp.bfloat16) for x in (q, k, v, pos)]
    out, state = astro_attention(*cast[:3], causal=causal, pos_keys=cast[3], return_state=True)
    assert out.dtype == jnp.bfloat16
    assert state.S.dtype == jnp.float32 and state.z.dtype == jnp.float32
    assert_close(out.astype(jnp.float32), ref, rtol=1e-2, name="bf16 vs f32")


def test_each_static_configuration_traces_once():
    q, k, v, pos = random_qkv(6, T=12, dtype=jnp.float32)
    before = _astro_attention._cache_size()
    for _ in range(3):
        astro_attention(q, k, v, causal=True, pos_keys=pos, mode="chunk", chunk_size=4)
        astro_attention(q + 1.0, k, v, causal=True, pos_keys=pos, mode="chunk", chunk_size=4)
    assert _astro_attention._cache_size() == before + 1
    astro_attention(q, k, v, causal=True, pos_keys=pos, mode="chunk", chunk_size=4, alpha=0.5)
    assert _astro_attention._cache_size() == before + 2


def test_auto_mode_is_logged(caplog):
    import logging

    from astroflax.kernels.astro.api import _log_auto_choice

    _log_auto_choice.cache_clear()  # logged once per shape: forget earlier tests' calls
    q, k, v, _ = random_qkv(7, T=70, dtype=jnp.float32)
    with caplog.at_level(logging.INFO, logger="astroflax.kernels.astro.api"):
        astro_attention(q, k, v, causal=True, chunk_size=32)
    assert "'chunk'" in caplog.text and "T=70" in caplog.text


@pytest.mark.parametrize(("causal", "mode"), CAUSAL_AND_MODE)
def test_head_major_layout_equals_default_layout(causal, mode):
    q, k, v, pos = (np.asarray(a) for a in random_qkv(8, T=21))  # NumPy transposes: no compile
    mask = padding_mask(2, 21, [21, 15])
    kw = dict(causal=causal, mode=mode, chunk_size=8, mask=mask, return_state=True)
    out, state = astro_attention(q, k, v, pos_keys=pos, **kw)
    head_major = [np.swapaxes(x, 1, 2) for x in (q, k, v)]
    out_h, state_h = astro_attention(*head_major, pos_keys=np.swapaxes(pos, 0, 1),
                                     layout="BHTD", **kw)
    assert_close(np.swapaxes(np.asarray(out_h), 1, 2), out, rtol=1e-14)
    assert_close(state_h.S, state.S, rtol=1e-14)
