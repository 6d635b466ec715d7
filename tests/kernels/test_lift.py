"""Lifting a per-head kernel over batch and heads: grouped runs equal the nested vmaps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroflax.kernels._lift import lift_in_groups, lift_over_batch_and_heads
from astroflax.kernels.astro.api import PREFIX_STATE_GROUP_BYTES, prefix_state_group_size

B, T, H, N = 3, 5, 4, 2


def _head_fn(x, per_head, per_example, shared):
    # One head: x [T, N], per_head [N], per_example [T], shared [N] -> ([T, N], ([N], [])).
    out = x * per_head + per_example[:, None] + shared
    return out, (jnp.sum(out, axis=0), jnp.max(out))


@pytest.mark.parametrize("group_size", [1, 3, 5, B * H])  # 3 and 5 leave a remainder
def test_grouped_lift_equals_nested_vmaps(group_size):
    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(keys[0], (B, T, H, N))  # BTHD: batch 0, head 1 once batch is gone
    per_head = jax.random.normal(keys[1], (H, N))
    per_example = jax.random.normal(keys[2], (B, T))
    shared = jax.random.normal(keys[3], (N,))
    axes = dict(batch_axes=(0, None, 0, None), head_axes=(1, 0, None, None),
                out_batch_axes=(0, 0), out_head_axes=(1, 0))
    expected = lift_over_batch_and_heads(_head_fn, **axes)(x, per_head, per_example, shared)
    got = lift_in_groups(_head_fn, **axes, batch_size=B, num_heads=H,
                         group_size=group_size)(x, per_head, per_example, shared)
    assert got[0].shape == (B, T, H, N) and got[1][0].shape == (B, H, N)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-6, atol=1e-6)


def test_prefix_state_group_size_fits_the_budget():
    per_pair = 4 * 64 * 64 * 64  # one [C=64, m=64, d=64] float32 block: 1 MiB
    assert PREFIX_STATE_GROUP_BYTES == 2**21
    assert prefix_state_group_size(64, 64, 64, pairs=128) == 2**21 // per_pair == 2
    assert prefix_state_group_size(8, 64, 64, pairs=128) == 16
    assert prefix_state_group_size(8, 64, 64, pairs=3) == 3  # never more than there are
    assert prefix_state_group_size(128, 64, 64, pairs=128) == 1
    # One pair's block beyond the budget: no grouping (all pairs at once, the plain vmaps).
    assert prefix_state_group_size(129, 64, 64, pairs=128) is None
