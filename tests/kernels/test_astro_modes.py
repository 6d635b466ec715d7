"""Every execution mode of astromorphic attention equals the direct O(T²) formula.

The formula is that of docs/model.md §2 (non-causal) and §4 (causal).

The grid T × (alpha, sigmoid, pos_keys, mask) × mode is covered so that every mode meets every
setting and every length meets every setting, without compiling the full cross product.

The reference is :func:`naive_astro_attention_head` (the formula written out, no code shared
with the modes), batched here with ``alpha``, ``m_div`` and ``eps`` as traced arguments and the
positional term and mask always present (zero rates, every token real, when a case has none):
one compiled reference per ``(T, causal, sigmoid)`` then serves every case, and its gradients
likewise.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroflax.kernels import astro_attention
from astroflax.kernels.astro import api, sigmoid_prefix_read, sigmoid_scan_read
from astroflax.kernels.astro.naive import naive_astro_attention_head
from astroflax.kernels.astro.scan import trace_stays_finite
from tests.helpers import (
    assert_close,
    left_padding_mask,
    normal,
    padding_mask,
    random_qkv,
    uniform,
)

B, H, M, D = 2, 2, 5, 3  # m != d on purpose: a transposed trace cannot pass
LENGTHS = (1, 7, 63, 64, 65, 200)
SETTINGS = list(itertools.product((0.25, 1.0), (True, False), (True, False)))  # alpha, sigmoid, pos
MODES = (("parallel", False, 64), ("parallel", True, 64), ("chunk", True, 16),
         ("chunk", True, 64), ("recurrent", True, 64))  # (mode, causal, chunk_size)


def _forward_cases():
    for (ti, T), (mi, mode) in itertools.product(enumerate(LENGTHS), enumerate(MODES)):
        for offset in (0, 4):  # two settings per (T, mode); over T the 8 settings all appear
            alpha, sigmoid, with_pos = SETTINGS[(ti + mi + offset) % len(SETTINGS)]
            with_mask = (ti + offset) % 3 != 0
            yield pytest.param(T, *mode, alpha, sigmoid, with_pos, with_mask,
                               id=f"T{T}-{mode[0]}{'-causal' if mode[1] else ''}-C{mode[2]}-"
                                  f"a{alpha}-sig{int(sigmoid)}-pos{int(with_pos)}-mask{int(with_mask)}")


def _elu1(x):
    return jax.nn.elu(x) + 1.0


@functools.partial(jax.jit, static_argnames=("causal", "sigmoid"))
def _reference_batched(q, k, v, pos, with_pos, mask, alpha, m_div, eps, *, causal, sigmoid):
    def one_head(q, k, v, pos, mask):
        # Without a positional term the astrocyte's rates are zero: x = φ(k) + 0, exactly.
        pos_feat = jnp.where(with_pos, _elu1(pos), 0.0)
        return naive_astro_attention_head(_elu1(q), _elu1(k), v, pos_feat, mask, causal=causal,
                                          alpha=alpha, sigmoid=sigmoid, m_div=m_div, eps=eps)

    over_heads = jax.vmap(one_head, in_axes=(1, 1, 1, 1, None), out_axes=1)
    return jax.vmap(over_heads, in_axes=(0, 0, 0, None, 0))(q, k, v, pos, mask)


def _reference_args(q, pos_keys, mask):
    # None becomes zeros / all-True, built by NumPy (an eager jnp.zeros is a compile per shape).
    B, T, H, m = q.shape
    with_pos = pos_keys is not None
    pos = pos_keys if with_pos else jnp.asarray(np.zeros((T, H, m), q.dtype))
    mask = jnp.asarray(np.ones((B, T), bool)) if mask is None else mask
    return pos, with_pos, mask


def reference(q, k, v, *, causal=False, alpha=0.25, sigmoid=True, m_div=float(M),
              pos_keys=None, mask=None, eps=1e-6):
    """``naive_astro_attention`` (elu+1 features) with one compiled program per shape and flags."""
    pos, with_pos, mask = _reference_args(q, pos_keys, mask)
    return _reference_batched(q, k, v, pos, with_pos, mask, alpha, m_div, eps, causal=causal,
                              sigmoid=sigmoid)


@functools.partial(jax.jit, static_argnames=("causal", "sigmoid"))
def _reference_grads(cot, q, k, v, pos, with_pos, mask, alpha, eps, *, causal, sigmoid):
    def loss(q, k, v, pos):
        return jnp.sum(cot * _reference_batched(q, k, v, pos, with_pos, mask, alpha, float(M), eps,
                                                causal=causal, sigmoid=sigmoid))
    return jax.grad(loss, argnums=(0, 1, 2, 3))(q, k, v, pos)


def _inputs(T, seed=0, with_mask=True, left=False):
    q, k, v, pos = random_qkv(seed, B=B, T=T, H=H, m=M, d=D)
    make = left_padding_mask if left else padding_mask
    mask = make(B, T, [T, max(1, (2 * T) // 3)]) if with_mask else None
    return q, k, v, pos, mask


@pytest.mark.parametrize(("T", "mode", "causal", "chunk_size", "alpha", "sigmoid", "with_pos",
                          "with_mask"), list(_forward_cases()))
def test_mode_matches_naive(T, mode, causal, chunk_size, alpha, sigmoid, with_pos, with_mask):
    q, k, v, pos, mask = _inputs(T, seed=T, with_mask=with_mask)
    kw = dict(causal=causal, alpha=alpha, sigmoid=sigmoid, pos_keys=pos if with_pos else None,
              mask=mask)
    out = astro_attention(q, k, v, mode=mode, chunk_size=chunk_size, **kw)
    assert_close(out, reference(q, k, v, **kw), name=mode)


GRAD_CASES = [
    # (mode, causal, chunk_size, T, alpha, sigmoid)
    ("parallel", False, 64, 65, 0.25, True),
    ("parallel", False, 64, 7, 1.0, False),
    ("parallel", True, 64, 65, 0.25, True),
    ("parallel", True, 64, 7, 0.25, False),
    ("chunk", True, 8, 65, 0.25, True),
    ("chunk", True, 8, 65, 1.0, False),
    ("chunk", True, 32, 65, 0.25, False),
    ("recurrent", True, 64, 7, 0.25, True),
    ("recurrent", True, 64, 7, 1.0, False),
    # The remaining lengths of the forward grid, so every T is also checked for gradients.
    ("chunk", True, 16, 1, 0.25, True),
    ("parallel", False, 64, 64, 0.25, False),
    ("parallel", False, 64, 63, 0.25, True),
    ("chunk", True, 64, 64, 0.25, True),
    ("chunk", True, 16, 200, 0.25, True),
    ("chunk", True, 16, 200, 0.25, False),
]


def _check_gradients(q, k, v, pos, mask, *, mode, causal, chunk_size, alpha, sigmoid, eps=1e-6):
    cot = normal(9, v.shape)

    def loss(q, k, v, pos):
        return jnp.sum(cot * astro_attention(q, k, v, causal=causal, alpha=alpha, sigmoid=sigmoid,
                                             pos_keys=pos, mask=mask, eps=eps, mode=mode,
                                             chunk_size=chunk_size))

    argnums = (0, 1, 2) if pos is None else (0, 1, 2, 3)
    got = jax.jit(jax.grad(loss, argnums=argnums))(q, k, v, pos)
    ref_pos, with_pos, ref_mask = _reference_args(q, pos, mask)
    want = _reference_grads(cot, q, k, v, ref_pos, with_pos, ref_mask, alpha, eps, causal=causal,
                            sigmoid=sigmoid)
    for name, g, w in zip(("dq", "dk", "dv", "dpos_keys"), got, want, strict=False):
        assert_close(g, w, rtol=1e-9, name=name)


@pytest.mark.parametrize(("mode", "causal", "chunk_size", "T", "alpha", "sigmoid"), GRAD_CASES)
def test_gradients_match_naive(mode, causal, chunk_size, T, alpha, sigmoid):
    q, k, v, pos, mask = _inputs(T, seed=2)
    _check_gradients(q, k, v, pos, mask, mode=mode, causal=causal, chunk_size=chunk_size,
                     alpha=alpha, sigmoid=sigmoid)


@pytest.mark.parametrize(("mode", "chunk_size"), [("parallel", 64), ("chunk", 4),
                                                  ("recurrent", 64)])
@pytest.mark.parametrize(("alpha", "sigmoid", "eps"), [(0.25, True, 1e-6), (1.0, False, 0.0)])
def test_left_padding_causal_matches_naive_with_finite_gradients(mode, chunk_size, alpha,
                                                                  sigmoid, eps):
    # Queries behind left padding have seen no real token: z = 0, c = 0. Their outputs are
    # zero, and neither 0**alpha nor 0/0 (eps = 0) may turn a gradient into NaN.
    q, k, v, pos, mask = _inputs(13, seed=6, left=True)
    kw = dict(causal=True, alpha=alpha, sigmoid=sigmoid, pos_keys=pos, mask=mask, eps=eps)
    out = astro_attention(q, k, v, mode=mode, chunk_size=chunk_size, **kw)
    assert_close(out, reference(q, k, v, **kw), name=mode)
    _check_gradients(q, k, v, pos, mask, mode=mode, causal=True, chunk_size=chunk_size,
                     alpha=alpha, sigmoid=sigmoid, eps=eps)


def test_gradients_without_positional_term_match_naive():
    q, k, v, _, mask = _inputs(20, seed=7)
    _check_gradients(q, k, v, None, mask, mode="chunk", causal=True, chunk_size=8, alpha=0.25,
                     sigmoid=True)


@pytest.mark.parametrize("causal", [False, True])
def test_non_finite_values_at_padding_positions_do_not_leak(causal):
    q, k, v, pos, mask = _inputs(9, seed=8)
    clean = astro_attention(q, k, v, causal=causal, pos_keys=pos, mask=mask)
    v = v.at[1, -1].set(jnp.inf)  # example 1 is padded from position 6 on
    out = astro_attention(q, k, v, causal=causal, pos_keys=pos, mask=mask)
    assert jnp.all(jnp.isfinite(out))
    np.testing.assert_array_equal(out, clean)     # the padded value changes nothing at all


def test_m_div_and_eps_follow_the_formula():
    q, k, v, pos, mask = _inputs(9, seed=3)
    kw = dict(alpha=0.5, sigmoid=True, pos_keys=pos, mask=mask, m_div=1000.0, eps=0.1)
    for causal in (False, True):
        assert_close(astro_attention(q, k, v, causal=causal, **kw),
                     reference(q, k, v, causal=causal, **kw), name=f"causal={causal}")


def test_default_m_div_is_the_state_width():
    q, k, v, pos, _ = _inputs(9, seed=4)
    assert_close(astro_attention(q, k, v, pos_keys=pos),
                 astro_attention(q, k, v, pos_keys=pos, m_div=float(M)), rtol=0)


def test_padding_queries_output_zero_and_padding_keys_change_nothing():
    q, k, v, pos, _ = _inputs(10, seed=5)
    mask = padding_mask(B, 10, [6, 10])
    out = astro_attention(q, k, v, pos_keys=pos, mask=mask)
    assert jnp.all(out[0, 6:] == 0)
    # The first example's real tokens, alone, give the same outputs as with padding appended.
    alone = astro_attention(q[:1, :6], k[:1, :6], v[:1, :6], pos_keys=pos)
    assert_close(out[:1, :6], alone, name="appended padding")


def test_long_parallel_causal_block_matches_naive():
    # One causal block longer than the grid above (which stops at T=200): long running sums.
    T = 300
    q, k, v, pos, mask = _inputs(T, seed=11)
    kw = dict(causal=True, alpha=0.25, sigmoid=True, pos_keys=pos, mask=mask)
    assert_close(astro_attention(q, k, v, mode="parallel", **kw),
                 reference(q, k, v, **kw), name="parallel, cumsum branch")


def _direct_numerators(S0, x, v, q_feat, m_div):
    # num_i = φ(q_i) @ σ((S0 + Σ_{t<=i} x_t v_tᵀ) / m_div) (Eq. 11): every prefix state by
    # jnp.cumsum, differentiated by plain autodiff (no hand-written backward).
    S = S0 + jnp.cumsum(x[:, :, None] * v[:, None, :], axis=0)
    return jnp.einsum("tm,tmd->td", q_feat, jax.nn.sigmoid(S / m_div))


# Jitted once here, so the reads of one length share the reference's two programs.
_direct_jit = jax.jit(_direct_numerators)
_direct_grads = jax.jit(jax.grad(lambda S0, x, v, q_feat, cot, m_div: jnp.sum(
    cot * _direct_numerators(S0, x, v, q_feat, m_div)), argnums=(0, 1, 2, 3)))


READS = {
    "prefix": sigmoid_prefix_read,
    "scan": sigmoid_scan_read,  # decides its backward from the values: subtraction here
    "scan-rebuild": lambda *a: sigmoid_scan_read(*a, subtraction_ok=False),
    "scan-subtract": lambda *a: sigmoid_scan_read(*a, subtraction_ok=True),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
@pytest.mark.parametrize("T", [1, 19, 70])  # 19, 70: padded blocks; 70: two reverse blocks
def test_sigmoid_reads_equal_the_direct_formula_with_gradients(read, T):
    S0 = normal(T, (M, D))
    x = uniform(T + 1, (T, M), high=2.0)
    v = normal(T + 2, (T, D), scale=2.0)
    q_feat = uniform(T + 3, (T, M))
    cot = normal(T + 4, (T, D))
    assert_close(jax.jit(lambda *a: read(*a, 2.0))(S0, x, v, q_feat),
                 _direct_jit(S0, x, v, q_feat, 2.0), rtol=1e-12, name="numerators")
    got = jax.jit(jax.grad(lambda *a: jnp.sum(cot * read(*a, 2.0)), argnums=(0, 1, 2, 3)))(
        S0, x, v, q_feat)
    want = _direct_grads(S0, x, v, q_feat, cot, 2.0)
    for name, g, w in zip(("dS0", "dx", "dv", "dq"), got, want, strict=True):
        assert_close(g, w, rtol=1e-10, name=name)


def test_trace_stays_finite_bounds_every_partial_sum():
    big = float(jnp.finfo(jnp.float32).max) / 2**10
    ok = functools.partial(trace_stays_finite, num_tokens=10, dtype=jnp.float32)
    assert ok(1.0, 2.0, 3.0)                                # 1 + 10 · 2 · 3 = 61
    assert not ok(0.0, 1.0, big / 10)                       # 10 · big / 10 reaches the limit
    assert ok(0.0, 1.0, big / 11)
    assert not ok(big, 0.0, 0.0)                            # the carried state alone
    for bad in (jnp.inf, jnp.nan):
        assert not ok(1.0, 1.0, bad) and not ok(bad, 1.0, 1.0)


# Jitted once: the three corrupt values below share these programs (the scan's backward is
# chosen by a lax.cond on the values, at run time).
_scan_read_jit = jax.jit(sigmoid_scan_read, static_argnums=4)
_scan_read_grads = jax.jit(jax.grad(lambda S0, x, v, q_feat, cot: jnp.sum(
    cot * sigmoid_scan_read(S0, x, v, q_feat, 4.0)), argnums=(0, 1, 2, 3)))


@pytest.mark.parametrize("value", [jnp.inf, -jnp.inf, 3e38])
def test_a_later_infinite_token_leaves_earlier_scan_outputs_and_gradients_finite(value):
    # Token 66 of 70 (second reverse block) overflows: the scan then rebuilds its states
    # exactly, so every output before it is unchanged and every gradient before it is finite
    # (σ' = 0 where the trace is infinite; subtracting the token back out would give NaN).
    # A NaN token's later states are NaN, and so, through them, are earlier gradients.
    T, bad = 70, 66
    S0 = jnp.asarray(np.zeros((M, D)))
    x = uniform(3, (T, M), low=0.5, high=1.5)
    v, cot = normal(4, (T, D)), normal(5, (T, D))
    q_feat = uniform(6, (T, M))
    corrupt = v.at[bad].set(value)
    np.testing.assert_array_equal(_scan_read_jit(S0, x, corrupt, q_feat, 4.0)[:bad],
                                  _scan_read_jit(S0, x, v, q_feat, 4.0)[:bad])
    grads = _scan_read_grads(S0, x, corrupt, q_feat, cot)
    assert np.all(np.isfinite(grads[0]))
    for g in grads[1:]:
        assert np.all(np.isfinite(g[:bad]))


def test_the_token_scan_is_this_cpu_backends_sigmoid_path():
    # The whole suite runs on CPU, so every causal sigmoid case above goes through the scan;
    # the next test covers the materialised path that GPU and TPU backends take.
    assert jax.default_backend() != "cpu" or api.scans_tokens_on_this_backend()


@pytest.mark.parametrize(("mode", "chunk_size", "T"), [("chunk", 16, 65), ("parallel", 64, 20)])
def test_materialised_prefix_states_match_naive(monkeypatch, mode, chunk_size, T):
    monkeypatch.setattr(api, "scans_tokens_on_this_backend", lambda: False)
    q, k, v, pos, mask = _inputs(T, seed=12)
    kw = dict(causal=True, alpha=0.25, sigmoid=True, pos_keys=pos, mask=mask)
    out = astro_attention(q, k, v, mode=mode, chunk_size=chunk_size, **kw)
    assert_close(out, reference(q, k, v, **kw), name=mode)
    _check_gradients(q, k, v, pos, mask, mode=mode, causal=True, chunk_size=chunk_size,
                     alpha=0.25, sigmoid=True)
