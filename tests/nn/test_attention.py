"""Attention layers against an independent numpy reference, the variant table, decoding, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroflax.kernels import astro_attention
from astroflax.nn import (
    VARIANTS,
    AstroAttention,
    RandomProjection,
    init_positional_weights,
    make_attention,
)
from tests.helpers import assert_close, padding_mask

D, H, T_MAX = 8, 2, 9


def make(variant, *, causal=False, dtype=jnp.float64, seed=0, **kw):
    if variant not in VARIANTS or VARIANTS[variant].kernel == "astro":
        return AstroAttention(D, H, max_len=T_MAX, attention=variant, causal=causal,
                              param_dtype=dtype, rngs=nnx.Rngs(seed), **kw)
    return make_attention(D, H, max_len=T_MAX, attention=variant, causal=causal,
                          param_dtype=dtype, rngs=nnx.Rngs(seed), **kw)


def np_(x):
    return np.asarray(x, np.float64)


def phi(x):
    return np.where(x > 0, x + 1, np.exp(np.minimum(x, 0)))


def reference(mod, x, mask, *, causal):
    """Paper Eq. 8–17 (+ Eq. 12 with an explicit P) written directly in numpy, O(T²)."""
    x = np_(x)
    B, T, _ = x.shape
    mask = np.ones((B, T), bool) if mask is None else np.asarray(mask)

    def proj(lin):
        return np.einsum("btD,Dhm->bthm", x, np_(lin.kernel[...])) + np_(lin.bias[...])

    q, k, v = proj(mod.query), proj(mod.key), proj(mod.value)
    if mod.feature_map == "random_features":
        W = np_(mod.projection[...])  # [H, M, n]
        n = q.shape[-1]

        def feat(a):
            a = a * n ** -0.25
            return (np.exp(np.einsum("bthn,hMn->bthM", a, W) - 0.5 * np.sum(a * a, -1,
                                                                               keepdims=True))
                    / np.sqrt(W.shape[1]))
    else:
        feat = phi
    qf, kf = feat(q), feat(k)
    m = qf.shape[-1]
    if mod.pos_M is not None:
        idx = np.arange(T_MAX)
        A = []
        for h in range(H):
            M = np_(mod.pos_M[...][h])
            P = np.exp(-np.exp(np_(mod.pos_log_decay[...][h])) * np.abs(idx[:, None] - idx[None]))
            A.append(M.T @ (M @ P @ M.T))
        af = phi(np.stack(A, 1)[:T])  # [T, H, m]
    else:
        af = np.zeros((T, H, m))
    m_div = mod.m_div
    out = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                if not mask[b, i]:
                    continue
                ts = [t for t in range(T) if mask[b, t] and (t <= i or not causal)]
                S = sum(np.outer(kf[b, t, h] + af[t, h], v[b, t, h]) for t in ts)
                Hm = 1 / (1 + np.exp(-S / m_div)) if mod.sigmoid else S / m_div
                z = sum(kf[b, t, h] for t in ts)
                c = qf[b, i, h] @ z ** mod.alpha
                out[b, i, h] = (qf[b, i, h] @ Hm) / (c + mod.eps)
    return np.einsum("bthd,hdD->btD", out, np_(mod.out.kernel[...])) + np_(mod.out.bias[...])


def softmax_reference(mod, x, *, causal):
    x = np_(x)

    def proj(lin):
        return np.einsum("btD,Dhm->bthm", x, np_(lin.kernel[...])) + np_(lin.bias[...])

    q, k, v = proj(mod.query), proj(mod.key), proj(mod.value)
    s = np.einsum("bihm,bjhm->bhij", q, k) / np.sqrt(q.shape[-1])
    if causal:
        T = x.shape[1]
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    out = np.einsum("bhij,bjhd->bihd", p, v)
    return np.einsum("bthd,hdD->btD", out, np_(mod.out.kernel[...])) + np_(mod.out.bias[...])


ASTRO_FAMILY = [v for v, spec in VARIANTS.items() if spec.kernel == "astro"]
DECODERS = [v for v in VARIANTS if v != "none"]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("variant", ASTRO_FAMILY)
def test_astro_family_matches_numpy_reference_with_padding(variant, causal):
    mod = make(variant, causal=causal, m_div=3.0 if VARIANTS[variant].m_div == "paper" else None)
    x = jax.random.normal(jax.random.key(1), (2, 7, D), jnp.float64)
    mask = None if causal else padding_mask(2, 7, [7, 4])
    assert_close(mod(x, mask=mask), reference(mod, x, mask, causal=causal), rtol=1e-9,
                 name=variant)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_matches_numpy_reference(causal):
    # float32: jax.nn.dot_product_attention cannot take float64 under strict dtype promotion.
    mod = make("softmax", causal=causal, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(2), (2, 6, D), jnp.float32)
    assert_close(mod(x), softmax_reference(mod, x, causal=causal), rtol=1e-5)


def test_variant_table_is_the_papers_table():
    # docs/model.md §5 (the paper's Table 1 and its two predecessors): feature map, alpha,
    # sigmoid, astrocytic positional term, m_div rule; softmax and none have no astro settings.
    rows = {name: (s.kernel, s.feature_map, s.alpha, s.sigmoid, s.positional, s.m_div)
            for name, s in VARIANTS.items() if s.kernel == "astro"}
    assert rows == {
        "astro": ("astro", "elu1", 0.25, True, True, "paper"),
        "astro_no_pe": ("astro", "elu1", 0.25, True, False, "paper"),
        "astro_no_nonlin": ("astro", "elu1", 1.0, False, True, "paper"),
        "kozachkov_iso": ("astro", "elu1", 1.0, False, False, "paper"),
        "kozachkov_rf": ("astro", "random_features", 1.0, False, False, 1.0),
        "linear": ("astro", "elu1", 1.0, False, False, 1.0),
    }
    assert {n: s.kernel for n, s in VARIANTS.items() if s.kernel != "astro"} == {
        "softmax": "softmax", "none": "none"}
    assert all(name == spec.name for name, spec in VARIANTS.items())


def test_kernel_argument_receives_the_variant_settings_and_overrides():
    seen = {}

    def spy(q, k, v, **kw):
        seen.update(kw)
        return jnp.zeros(v.shape, v.dtype)

    mod = make("astro", kernel=spy, alpha=0.5, m_div=7.0)
    out = mod(jnp.ones((1, 5, D), jnp.float64))
    assert out.shape == (1, 5, D)
    assert seen["alpha"] == 0.5 and seen["sigmoid"] is True and seen["m_div"] == 7.0
    assert seen["pos_keys"].shape == (T_MAX, H, D // H)
    assert seen["feature_map"] == "elu1" and seen["causal"] is False
    assert seen["implementation"] == "xla"
    make("astro", kernel=spy, implementation="pallas")(jnp.ones((1, 5, D), jnp.float64))
    assert seen["implementation"] == "pallas"


def test_pallas_implementation_on_a_cpu_backend_is_a_clear_error():
    layer = make("astro", causal=True, implementation="pallas", dtype=jnp.float32)
    with pytest.raises(ValueError, match="compiles for GPU or TPU"):
        layer(jnp.ones((1, 5, D), jnp.float32))


def test_head_major_projection_equals_projecting_to_bthd_with_gradients():
    # The layer projects straight into [B, H, T, *] for the kernel; a replacement kernel gets
    # the [B, T, H, *] projections of nnx.LinearGeneral. Same parameters, same numbers. Causal
    # (the token-scan path on CPU; the non-causal forward is checked against numpy above).
    causal = True
    x = jax.random.normal(jax.random.key(3), (2, 7, D), jnp.float64)
    mask = padding_mask(2, 7, [7, 5])

    def loss(mod):
        out, calcium = mod(x, mask=mask, return_calcium=True)
        return jnp.sum(out ** 2) + jnp.sum(calcium)

    head_major = make("astro", causal=causal)
    bthd = make("astro", causal=causal, kernel=astro_attention)
    assert_close(nnx.jit(loss)(head_major), nnx.jit(loss)(bthd), rtol=1e-12)
    g_head_major = nnx.state(nnx.jit(nnx.grad(loss))(head_major), nnx.Param)
    g_bthd = nnx.state(nnx.jit(nnx.grad(loss))(bthd), nnx.Param)
    for (path, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(g_head_major),
                                 jax.tree_util.tree_leaves_with_path(g_bthd), strict=True):
        assert_close(a, b, rtol=1e-10, name=jax.tree_util.keystr(path))


def test_positional_init_gives_unit_std_activity_for_any_window():
    for t_max, m in [(16, 4), (400, 32)]:
        M = init_positional_weights(jax.random.key(0), 2, m, t_max, decay=0.1)
        mod = AstroAttention(2 * m, 2, max_len=t_max, rngs=nnx.Rngs(0))
        mod.pos_M[...] = M
        A = np.asarray(mod.positional_keys())  # [T_max, H, m]
        assert_close(A.std(axis=(0, 2)), np.ones(2), rtol=1e-4)


def test_decay_is_positive_and_learnable():
    mod = make("astro")
    assert_close(np.exp(np_(mod.pos_log_decay[...])), np.full(H, 0.1), rtol=1e-12)
    x = jax.random.normal(jax.random.key(3), (1, 5, D), jnp.float64)
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(mod)
    assert np.all(np.abs(np_(grads.pos_log_decay[...])) > 0)
    assert np.all(np.abs(np_(grads.pos_M[...])) > 0)


def test_random_projection_is_fixed_not_a_param():
    mod = make("kozachkov_rf", num_features=6)
    assert isinstance(mod.projection, RandomProjection)
    assert mod.projection[...].shape == (H, 6, D // H)
    params = nnx.state(mod, nnx.Param)
    assert "projection" not in params
    assert "projection" in nnx.state(mod, RandomProjection)
    # Drawn from rngs: same seed, same matrix; another seed, another.
    assert np.array_equal(make("kozachkov_rf", seed=0).projection[...], make(
        "kozachkov_rf", seed=0).projection[...])
    assert not np.array_equal(make("kozachkov_rf", seed=0).projection[...], make(
        "kozachkov_rf", seed=1).projection[...])


@pytest.mark.parametrize("variant", DECODERS)
def test_prefill_then_steps_equal_the_full_causal_pass(variant):
    dtype, rtol = (jnp.float32, 1e-5) if variant == "softmax" else (jnp.float64, 1e-9)
    mod = make(variant, causal=True, dtype=dtype)
    x = jax.random.normal(jax.random.key(4), (2, 7, D), dtype)
    full = mod(x)
    y, state = mod.prefill(x[:, :3])
    outs = [y]
    for t in range(3, 7):
        y_t, state = mod.step(x[:, t], state)
        outs.append(y_t[:, None])
    assert int(state.position) == 7
    assert_close(jnp.concatenate(outs, axis=1), full, rtol=rtol, name=variant)
    # From the empty state too.
    state = mod.init_decode_state(2)
    steps = []
    for t in range(7):
        y_t, state = mod.step(x[:, t], state)
        steps.append(y_t)
    assert_close(jnp.stack(steps, axis=1), full, rtol=rtol, name=variant)


def test_unknown_variant_lists_allowed():
    with pytest.raises(ValueError, match=r"allowed: .*'astro'.*'softmax'"):
        make("astrox")


def test_sequence_longer_than_max_len_is_a_clear_error():
    mod = make("astro")
    with pytest.raises(ValueError, match=r"exceeds the model's max_len \(T_max\) 9; allowed: 1..9"):
        mod(jnp.ones((1, T_MAX + 1, D), jnp.float64))


def test_softmax_rejects_astro_only_settings():
    with pytest.raises(ValueError, match="astro-family variants only"):
        make("softmax", alpha=0.5)


def test_decoding_needs_a_causal_layer():
    with pytest.raises(ValueError, match="causal=True"):
        make("astro").init_decode_state(1)


@pytest.mark.parametrize("causal", [False, True])
def test_calcium_response_is_eq_15(causal):
    mod = make("astro", causal=causal)
    x = jax.random.normal(jax.random.key(5), (2, 6, D), jnp.float64)
    mask = padding_mask(2, 6, [6, 4])
    _, c = mod(x, mask=mask, return_calcium=True)

    def proj(lin):
        return np.einsum("btD,Dhm->bthm", np_(x), np_(lin.kernel[...])) + np_(lin.bias[...])

    qf, kf = phi(proj(mod.query)), phi(proj(mod.key)) * np.asarray(mask)[:, :, None, None]
    z = np.cumsum(kf, axis=1) if causal else np.sum(kf, axis=1, keepdims=True)
    assert_close(c, np.sum(qf * z ** 0.25, axis=-1), rtol=1e-12)


# Continued prefill: T = 7 tokens split at a; a = 0 continues the empty init_decode_state.
# (1 and 6 share their two shapes, so the end splits cost few compiles.)
ALL_SPLITS = [0, 1, 6]
CONTINUED = [
    ("astro", {}, ALL_SPLITS),                      # sigmoid on, positional term on
    ("astro", {"mode": "chunk", "chunk_size": 3}, [4]),  # chunk boundaries inside both parts
    ("astro_no_nonlin", {}, [4]),                   # sigmoid off, positional term on
    ("softmax", {}, ALL_SPLITS),
    ("none", {}, ALL_SPLITS),
]


def causal_reference(mod, x):
    """The whole causal pass written directly in numpy (independent of prefill and step)."""
    if mod.variant == "none":
        return np.zeros(x.shape)
    if mod.variant == "softmax":
        return softmax_reference(mod, x, causal=True)
    return reference(mod, x, None, causal=True)


def assert_states_close(actual, expected, rtol, name):
    leaves_a = jax.tree_util.tree_leaves_with_path(actual)
    leaves_e = jax.tree_util.tree_leaves_with_path(expected)
    assert [p for p, _ in leaves_a] == [p for p, _ in leaves_e], name
    for (path, a), (_, e) in zip(leaves_a, leaves_e, strict=True):
        assert_close(a, e, rtol=rtol, name=f"{name} {jax.tree_util.keystr(path)}")


@pytest.mark.parametrize(("variant", "overrides", "splits"), CONTINUED)
def test_prefill_continued_from_a_state_equals_one_prefill_and_token_steps(variant, overrides,
                                                                          splits):
    # Jitted, as a segment recurrence runs it: the state's position is traced.
    prefill = nnx.jit(lambda m, x, s: m.prefill(x, s))
    step = nnx.jit(lambda m, x, s: m.step(x, s))
    # float64 throughout; jax.nn.dot_product_attention (softmax) computes in float32 inside.
    rtol = 1e-6 if variant == "softmax" else 1e-9
    mod = make(variant, causal=True, **overrides)
    x = jax.random.normal(jax.random.key(6), (2, 7, D), jnp.float64)
    expected = causal_reference(mod, x)
    y_full, state_full = prefill(mod, x, None)
    assert_close(y_full, expected, rtol=rtol, name="prefill")
    # Token by token from the empty state (the recurrent step / the KV cache).
    state_steps = mod.init_decode_state(2)
    steps = []
    for t in range(7):
        y_t, state_steps = step(mod, x[:, t], state_steps)
        steps.append(y_t)
    assert_close(jnp.stack(steps, axis=1), expected, rtol=rtol, name="steps")
    for a in splits:
        if a == 0:
            outs, state = [], mod.init_decode_state(2)
        else:
            y_a, state = prefill(mod, x[:, :a], None)
            outs = [y_a]
        y_b, state = prefill(mod, x[:, a:], state)
        assert int(state.position) == 7
        assert_close(jnp.concatenate([*outs, y_b], axis=1), expected, rtol=rtol, name=f"a={a}")
        assert_states_close(state, state_full, 1e-10, f"a={a} vs prefill")
        assert_states_close(state, state_steps, 1e-10, f"a={a} vs steps")
    # A continued state decodes on at the right position (the next positional row / slot).
    y_next, _ = step(mod, x[:, 0], state)
    y_ref, _ = step(mod, x[:, 0], state_full)
    assert_close(y_next, y_ref, rtol=1e-10, name="step after a continued prefill")


@pytest.mark.parametrize("variant", ["astro", "softmax", "none"])
def test_prefill_past_max_len_or_from_another_layers_state_is_a_clear_error(variant):
    mod = make(variant, causal=True)
    x = jax.random.normal(jax.random.key(7), (1, 5, D), jnp.float64)
    _, state = mod.prefill(x)
    # Up to T_max is allowed (eagerly, with a concrete position): 5 + 4 = 9.
    y, full = mod.prefill(x[:, :4], state)
    assert int(full.position) == T_MAX
    x9 = jnp.concatenate([x, x[:, :4]], axis=1)
    assert_close(y, causal_reference(mod, x9)[:, 5:], rtol=1e-6 if variant == "softmax" else 1e-9,
                 name=variant)
    with pytest.raises(ValueError, match=r"prefill of 5 tokens from position 5 runs past the "
                                         r"model's max_len \(T_max\) 9"):
        mod.prefill(x, state)
    other = make("none" if variant != "none" else "astro", causal=True).init_decode_state(1)
    with pytest.raises(ValueError, match=r"state: expected the \w+ that this layer's"):
        mod.prefill(x, other)
