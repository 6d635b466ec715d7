"""``AstroLM`` decoding: a prefill continued from the per-layer states of an earlier one."""

import jax
import jax.numpy as jnp
import pytest

from astroflax.models import create_model
from tests.helpers import assert_close


def test_prefill_continued_from_states_equals_one_prefill():
    # tiny_wikitext2: 2 layers, max_len 16; both the astrocytic positional term and the
    # sinusoidal absolute positions must continue at position 3.
    model = create_model("tiny_wikitext2", attention="astro", pos_embedding="sinusoidal",
                         param_dtype=jnp.float64)
    tokens = jax.random.randint(jax.random.key(0), (2, 8), 0, 50)
    one, _ = model.prefill(tokens)
    logits_a, states = model.prefill(tokens[:, :3])
    logits_b, states = model.prefill(tokens[:, 3:], states)
    assert_close(jnp.concatenate([logits_a, logits_b], axis=1), one, rtol=1e-9)
    assert [int(s.position) for s in states] == [8, 8]
    with pytest.raises(ValueError, match=r"prefill of 9 tokens from position 8 runs past"):
        model.prefill(jnp.ones((2, 9), jnp.int32), states)
