"""Bad input raises ValueError naming the argument, before anything is traced."""

import jax.numpy as jnp
import pytest

from astroflax.kernels import AstroState, astro_attention, astro_positional, softmax_attention
from tests.helpers import assert_close, random_qkv

q, k, v, pos = random_qkv(0, B=2, T=6, H=3, m=4, d=5)


@pytest.mark.parametrize(("kwargs", "names"), [
    (dict(q=q[0]), "q: expected a rank-4 array"),
    (dict(k=k[:, :, :2]), "k/v heads"),
    (dict(v=v[:, :, :2]), "k/v heads"),
    (dict(k=k[..., :3]), "k: expected the shape of q"),
    (dict(v=v[:, :5]), "v: expected batch, seq and heads of q (2, 6, 3)"),
    (dict(layout="THBD"), "layout: expected one of"),
    (dict(q=q[:, :0], k=k[:, :0], v=v[:, :0]), "q: expected at least one token"),
    (dict(v=v.astype(jnp.int32)), "v: expected a floating-point array"),
    (dict(causal="no"), "causal: expected a bool"),
    (dict(sigmoid=1), "sigmoid: expected a bool"),
    (dict(alpha=jnp.array([0.25, 0.5])), "alpha: expected a real scalar"),
    (dict(mask=[[1] * 6] * 2), "mask: expected a bool array"),
    (dict(chunk_size=2.5, causal=True), "chunk_size: expected a positive int"),
    (dict(initial_state=AstroState(S=jnp.zeros((2, 3, 4, 5), jnp.float32),
                                   z=jnp.zeros((2, 3, 4), jnp.float32))),
     "initial_state: expected AstroState(S [2, 3, 4, 5], z [2, 3, 4]) in float64"),
    (dict(initial_state=(jnp.zeros((2, 3, 4, 5)), jnp.zeros((2, 3, 4)))), "initial_state"),
    (dict(m_div=0.0), "m_div: expected finite values > 0"),
    (dict(m_div=-3.0), "m_div"),
    (dict(alpha=0.0), "alpha: expected finite values > 0"),
    (dict(alpha=-1.0), "alpha"),
    (dict(eps=-1e-3), "eps"),
    (dict(pos_keys=pos[:5]), "pos_keys: expected shape [>= 6, 3, 4]"),
    (dict(pos_keys=pos[:, :2]), "pos_keys"),
    (dict(pos_keys=pos[0]), "pos_keys: expected a rank-3 array"),
    (dict(mask=jnp.ones((2, 6), jnp.int32)), "mask: expected a bool array"),
    (dict(mask=jnp.ones((2, 5), bool)), "mask"),
    (dict(mode="fast"), "mode: expected one of"),
    (dict(mode="chunk"), "mode: expected 'parallel' or 'auto' when causal=False"),
    (dict(feature_map="relu"), "feature_map: expected one of"),
    (dict(feature_map="random_features"), "projection: expected [num_features, 4]"),
    (dict(projection=jnp.ones((8, 4))), "projection: expected None"),
    (dict(chunk_size=0, causal=True), "chunk_size"),
    (dict(initial_state=AstroState(S=jnp.zeros((2, 3, 4, 4)), z=jnp.zeros((2, 3, 4)))),
     "initial_state"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, names):
    args = dict(q=q, k=k, v=v)
    args.update({key: kwargs.pop(key) for key in ("q", "k", "v") if key in kwargs})
    with pytest.raises(ValueError, match=None) as info:
        astro_attention(args["q"], args["k"], args["v"], **kwargs)
    assert names in str(info.value), str(info.value)


@pytest.mark.parametrize(("kwargs", "names"), [
    (dict(decay=0.0), "decay: expected finite values > 0"),
    (dict(decay=-0.5), "decay"),
    (dict(length=0), "length: expected an int in 1..10"),
    (dict(length=11), "length"),
])
def test_positional_bad_arguments(kwargs, names):
    args = dict(decay=0.1, length=10) | kwargs
    with pytest.raises(ValueError) as info:
        astro_positional(jnp.ones((4, 10)), **args)
    assert names in str(info.value)
    with pytest.raises(ValueError, match="M: expected a rank-2 array"):
        astro_positional(jnp.ones((4, 10, 1)), decay=0.1, length=10)


def test_softmax_bad_arguments():
    with pytest.raises(ValueError, match="k: expected the shape of q"):
        softmax_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="mask"):
        softmax_attention(q, k, v, mask=jnp.ones((2, 6)))


@pytest.mark.parametrize("fn", [softmax_attention, astro_attention])
def test_python_lists_are_refused_naming_the_argument(fn):
    with pytest.raises(ValueError, match=r"q: expected a jax or NumPy array.*got list"):
        fn(q.tolist(), k, v)
    with pytest.raises(ValueError, match="v: expected a jax or NumPy array"):
        fn(q, k, v.tolist())


@pytest.mark.parametrize("fn", [softmax_attention, astro_attention])
def test_mixed_dtypes_are_refused_not_promoted(fn):
    with pytest.raises(ValueError, match=r"q/k/v: expected one dtype.*v: float32"):
        fn(q, k, v.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"q/k/v: expected one dtype.*k: bfloat16"):
        fn(q, k.astype(jnp.bfloat16), v)


def test_softmax_accepts_a_nested_list_mask():
    mask = [[True] * 6, [True] * 4 + [False] * 2]
    assert_close(softmax_attention(q, k, v[..., :4], mask=mask),
                 softmax_attention(q, k, v[..., :4], mask=jnp.asarray(mask)), rtol=0)


def test_traced_alpha_is_refused_with_a_message_saying_it_is_static():
    import jax

    with pytest.raises(ValueError, match="alpha: expected a static Python number"):
        jax.jit(lambda a: astro_attention(q, k, v, alpha=a))(0.5)


def test_numpy_integer_chunk_size_is_accepted():
    import numpy as np

    out = astro_attention(q, k, v, causal=True, mode="chunk", chunk_size=np.int64(4))
    assert out.shape == v.shape


def test_a_nested_list_mask_is_accepted():
    mask = [[True] * 6, [True] * 4 + [False] * 2]
    assert_close(astro_attention(q, k, v, mask=mask), astro_attention(q, k, v,
                                                                      mask=jnp.asarray(mask)),
                 rtol=0)
