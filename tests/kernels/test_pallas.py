"""The fused Pallas kernels equal the direct O(T²) formula, in the Pallas interpreter on CPU.

Outputs and gradients w.r.t. q, k, v and the positional keys, float32 kernels against a float64
reference, causal and not, over awkward lengths, masks, chunk sizes, value tiles and both kernel
drivers (TPU grid-carried and GPU in-kernel loop). Interpret mode compiles every shape anew, so
the cases are few and tiny, chosen to cover each setting at least once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroflax.kernels import AstroState, astro_attention, draw_random_projection
from astroflax.kernels.astro.core import ReadParams
from astroflax.kernels.astro.naive import naive_astro_attention
from astroflax.kernels.pallas.attention import pallas_astro_attention
from astroflax.kernels.pallas.causal import KernelConfig, causal_hebbian_read
from tests.helpers import assert_close, left_padding_mask, normal, padding_mask, random_qkv

B, H, M, D = 2, 2, 8, 16  # m != d, so a transposed trace cannot pass; D splits into two tiles
# float32 kernels vs a float64 reference: sums of up to 200 terms in float32.
OUT_RTOL, GRAD_RTOL = 2e-5, 1e-4
# Interpret-mode kernels are loops XLA compiles slowly; unoptimised code compiles twice as fast
# and runs these tiny shapes in milliseconds anyway.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

CASES = [  # (T, causal, chunk_size, d_tile, backend, sigmoid, pos, mask)
    pytest.param(1, True, 32, None, "tpu", True, True, "right", id="T1-causal"),
    pytest.param(63, True, 32, 8, "tpu", True, True, "left", id="T63-causal-C32-tile8-left"),
    pytest.param(64, True, 64, None, "gpu", True, False, None, id="T64-causal-gpu"),
    pytest.param(65, True, 64, 8, "gpu", False, True, "right", id="T65-causal-gpu-linear"),
    pytest.param(200, True, 64, None, "tpu", True, True, "right", id="T200-causal-C64"),
    pytest.param(63, False, 32, None, "gpu", False, True, "left",
                 id="T63-noncausal-gpu-linear-left"),
    pytest.param(200, False, 64, None, "tpu", True, True, "right", id="T200-noncausal"),
]


def _inputs(T: int, mask_kind: str | None):
    q, k, v, pos = random_qkv(T, B=B, T=T, H=H, m=M, d=D, dtype=jnp.float32)
    lengths = [T, max(1, (2 * T) // 3)]
    mask = {None: None, "right": padding_mask, "left": left_padding_mask}[mask_kind]
    return q, k, v, pos, None if mask is None else mask(B, T, lengths)


@pytest.mark.parametrize("T, causal, chunk_size, d_tile, backend, sigmoid, with_pos, mask_kind",
                         CASES)
def test_pallas_matches_naive_outputs_and_gradients(T, causal, chunk_size, d_tile, backend,
                                                    sigmoid, with_pos, mask_kind):
    q, k, v, pos, mask = _inputs(T, mask_kind)
    pos = pos if with_pos else None
    params = ReadParams(alpha=0.25, sigmoid=sigmoid, m_div=3.0, eps=1e-6)
    weights = normal(1, (B, T, H, D), jnp.float32)
    empty = AstroState(S=jnp.zeros((B, H, M, D), jnp.float32), z=jnp.zeros((B, H, M), jnp.float32))

    def pallas_loss(q, k, v, pos):
        out, _ = pallas_astro_attention(
            q, k, v, pos, mask, None, empty, causal=causal, params=params, feature_map="elu1",
            chunk_size=chunk_size, layout="BTHD", backend=backend, interpret=True, d_tile=d_tile)
        return jnp.sum(out * weights), out

    def naive_loss(q, k, v, pos):
        out = naive_astro_attention(q, k, v, causal=causal, alpha=params.alpha, sigmoid=sigmoid,
                                    m_div=params.m_div, pos_keys=pos, mask=mask, eps=params.eps)
        return jnp.sum(out * weights.astype(jnp.float64)), out

    argnums = (0, 1, 2, 3) if with_pos else (0, 1, 2)
    def value_and_grad(loss):
        return jax.jit(jax.value_and_grad(loss, argnums, has_aux=True),
                       compiler_options=FAST_COMPILE)

    (_, out), grads = value_and_grad(pallas_loss)(q, k, v, pos)
    as64 = [a if a is None else a.astype(jnp.float64) for a in (q, k, v, pos)]
    (_, want), want_grads = value_and_grad(naive_loss)(*as64)
    assert out.dtype == jnp.float32
    assert_close(out, want, rtol=OUT_RTOL, name="out")
    for name, got, expected in zip("qkvA"[:len(grads)], grads, want_grads, strict=True):
        assert_close(got, expected, rtol=GRAD_RTOL, name=f"d{name}")
    if mask is not None:  # padding tokens contribute nothing, so their gradients are exact zeros
        padded = ~np.asarray(mask)
        assert np.all(np.asarray(grads[1])[padded] == 0) and np.all(np.asarray(out)[padded] == 0)


@pytest.mark.parametrize("causal, layout, random_features",
                         [(True, "BTHD", False), (False, "BHTD", True)],
                         ids=["causal", "noncausal-BHTD-random-features"])
def test_pallas_resume_and_state_gradients_match_xla(causal, layout, random_features):
    # Split-and-resume through the public API: the second half starts from the XLA path's
    # state; outputs, returned state and gradients w.r.t. the initial state agree with XLA,
    # in either layout and with per-head random features (Kozachkov's hidden neurons).
    T, C, split = 40, 16, 24
    q, k, v, pos, mask = _inputs(T, "right")
    time_axis = 1
    if layout == "BHTD":
        q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
        pos, time_axis = jnp.swapaxes(pos, 0, 1), 2
    features = {}
    if random_features:
        keys = jax.random.split(jax.random.key(2), H)
        features = {"feature_map": "random_features", "projection": jnp.stack(
            [draw_random_projection(kk, M, M) for kk in keys])}  # [H, m, n]

    def part(a, lo, hi, axis=time_axis):
        return jax.lax.slice_in_dim(a, lo, hi, axis=axis)

    def pos_part(lo, hi):
        return part(pos, lo, hi, time_axis - 1)

    first = astro_attention(part(q, 0, split), part(k, 0, split), part(v, 0, split),
                            causal=causal, pos_keys=pos_part(0, split), mask=mask[:, :split],
                            return_state=True, layout=layout, **features)[1]

    def run(implementation, S0, q):
        out, state = astro_attention(
            q, part(k, split, T), part(v, split, T), causal=causal, pos_keys=pos_part(split, T),
            mask=mask[:, split:], initial_state=AstroState(S=S0, z=first.z), return_state=True,
            chunk_size=C, layout=layout, implementation=implementation,
            interpret=implementation == "pallas", **features)
        return jnp.sum(jnp.tanh(out)) + 1e-3 * jnp.sum(state.S ** 2), (out, state)

    grad = jax.jit(jax.value_and_grad(run, argnums=(1, 2), has_aux=True), static_argnums=0,
                   compiler_options=FAST_COMPILE)
    (_, (out, state)), (dS0, dq) = grad("pallas", first.S, part(q, split, T))
    (_, (want, want_state)), (want_dS0, want_dq) = grad("xla", first.S, part(q, split, T))
    assert_close(out, want, rtol=OUT_RTOL, name="out")
    assert_close(state.S, want_state.S, rtol=OUT_RTOL, name="S")
    assert_close(state.z, want_state.z, rtol=OUT_RTOL, name="z")
    assert_close(dS0, want_dS0, rtol=GRAD_RTOL, name="dS0")
    assert_close(dq, want_dq, rtol=GRAD_RTOL, name="dq")


def test_pallas_rejects_what_it_does_not_run():
    q, k, v, _ = random_qkv(0, B=1, T=4, H=1, m=4, d=4, dtype=jnp.float32)
    with pytest.raises(ValueError, match="implementation"):
        astro_attention(q, k, v, implementation="triton")
    with pytest.raises(ValueError, match="interpret=True"):
        astro_attention(q, k, v, implementation="pallas")  # CPU: no compiled kernels here
    with pytest.raises(ValueError, match="recurrent"):
        astro_attention(q, k, v, causal=True, mode="recurrent", implementation="pallas",
                        interpret=True)
    with pytest.raises(ValueError, match="float64"):
        astro_attention(*(a.astype(jnp.float64) for a in (q, k, v)), implementation="pallas",
                        interpret=True)
    with pytest.raises(ValueError, match="only applies"):
        astro_attention(q, k, v, interpret=True)
    T = 256  # a compiled TPU kernel needs 128-lane value blocks
    rows = jnp.zeros((1, T, 4))
    config = KernelConfig(m_div=1.0, chunk_size=64, backend="tpu")
    with pytest.raises(ValueError, match="multiple of 128"):
        causal_hebbian_read(rows, rows, rows, jnp.zeros((1, T, 1)), jnp.zeros((1, 4, 4)), config)
    with pytest.raises(ValueError, match="d_tile"):
        causal_hebbian_read(rows, rows, rows, jnp.zeros((1, T, 1)), jnp.zeros((1, 4, 4)),
                            KernelConfig(m_div=1.0, d_tile=3, interpret=True))
