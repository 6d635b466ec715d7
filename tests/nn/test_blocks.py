"""Transformer blocks and the block stack: decoding continued from per-layer states."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from astroflax.nn import BlockStack
from tests.helpers import assert_close

D, H, T_MAX = 8, 2, 9


def test_prefill_continued_from_states_equals_one_prefill():
    # Two pre-LN blocks (so the stack's final norm too), astro with its positional term.
    stack = BlockStack(2, D, H, norm="pre", max_len=T_MAX, causal=True, attention="astro",
                       param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 7, D), jnp.float64)
    y_full, states_full = stack.prefill(x)
    y_a, states = stack.prefill(x[:, :4])
    y_b, states = stack.prefill(x[:, 4:], states)
    assert_close(jnp.concatenate([y_a, y_b], axis=1), y_full, rtol=1e-9)
    assert [int(s.position) for s in states] == [7, 7]
    for (path, a), (_, e) in zip(jax.tree_util.tree_leaves_with_path(states),
                                 jax.tree_util.tree_leaves_with_path(states_full), strict=True):
        assert_close(a, e, rtol=1e-10, name=jax.tree_util.keystr(path))


def test_stack_prefill_needs_one_state_per_layer():
    stack = BlockStack(2, D, H, max_len=T_MAX, causal=True, attention="none", rngs=nnx.Rngs(0))
    x = jnp.ones((1, 3, D), jnp.float32)
    _, states = stack.prefill(x)
    with pytest.raises(ValueError, match=r"one decoding state per layer \(2\), got 1"):
        stack.prefill(x, states[:1])
