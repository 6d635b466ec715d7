"""``AstroLM``: a strictly causal decoder-only language model with recurrent generation."""

from __future__ import annotations

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from astroflax.models._common import Trunk, check_positive
from astroflax.nn.attention import DecodeState
from astroflax.nn.blocks import dense
from astroflax.nn.embed import TokenEmbedding
from astroflax.nn.spec import AttentionSpec

DecodeStates = tuple[DecodeState, ...]
_log = logging.getLogger(__name__)


class AstroLM(nnx.Module):
    """Tokens ``[B, T]`` -> next-token logits ``[B, T, V]`` (the paper's WikiText-2 model).

    The paper's setup is docs/model.md §7. Every block is causal (docs/model.md §4: the gradient
    of output ``i`` with respect to any input ``j > i`` is exactly zero) unless
    ``causal=False``, a control only. Generation prefills the prompt once, keeping each layer's
    recurrent state (astro family: ``S, z``, O(m·d) per head; softmax: a KV cache of ``T_max``
    positions), then decodes token by token without re-running the prefix.
    """

    def __init__(self, vocab_size: int, *, max_len: int = 512, features: int = 768,
                 num_layers: int = 1, num_heads: int = 6, tie_embeddings: bool = True,
                 attention: AttentionSpec | str = "astro", mlp_dim: int | None = None,
                 norm: str = "post", dropout: float = 0.0, pos_embedding: str = "paper",
                 embed_scale: str = "sqrt_d", causal: bool = True, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        """Builds the model.

        Args:
          vocab_size: token vocabulary ``V`` (fixed by the data).
          max_len: longest sequence ``T_max``, prompt plus generated tokens (fixed by the data's
            length).
          features: as in :class:`astroflax.models.AstroViT`.
          num_layers: as in :class:`astroflax.models.AstroViT`.
          num_heads: as in :class:`astroflax.models.AstroViT`.
          tie_embeddings: LM output logits ``h @ Eᵀ`` with the input table ``E [V, D]``; else a
            separate ``[D, V]`` head.
          embed_scale: token embeddings times sqrt_d | one. ``"sqrt_d"`` (the default)
            multiplies token embeddings by ``√D`` before absolute positions are added, as the
            original Transformer does: the table starts at std ``D^-0.5``, so the scaled
            embeddings have std ≈ 1, comparable to a sinusoidal table (std ≈ 0.71) instead of
            ~``√D``× smaller. ``"one"`` adds them unscaled.
          causal: LM only: False makes every block non-causal, a decoder that sees the future,
            a control only (a warning is logged; :meth:`generate` refuses it).
          attention: as in :class:`astroflax.models.AstroViT`.
          mlp_dim: as in :class:`astroflax.models.AstroViT`.
          norm: as in :class:`astroflax.models.AstroViT`.
          dropout: as in :class:`astroflax.models.AstroViT`.
          pos_embedding: as in :class:`astroflax.models.AstroViT`.
          dtype: as in :class:`astroflax.models.AstroViT`.
          param_dtype: as in :class:`astroflax.models.AstroViT`.
          rngs: as in :class:`astroflax.models.AstroViT`.
        """
        check_positive(features=features, vocab_size=vocab_size)
        if not causal:
            _log.warning("AstroLM(causal=False): every position sees the future tokens; a "
                         "control only, its perplexity is not a language model's")
        self.vocab_size, self.max_len, self.causal = vocab_size, max_len, causal
        self.embed = TokenEmbedding(vocab_size, features, dtype=dtype, param_dtype=param_dtype,
                                    rngs=rngs)
        self.trunk = Trunk(features=features, num_layers=num_layers, num_heads=num_heads,
                           max_len=max_len, causal=causal, attention=attention, mlp_dim=mlp_dim,
                           norm=norm, dropout=dropout, pos_embedding=pos_embedding,
                           embed_scale=embed_scale, dtype=dtype, param_dtype=param_dtype,
                           rngs=rngs)
        self.head = None if tie_embeddings else dense(
            features, vocab_size, ("embed", "vocab"), dtype=dtype, param_dtype=param_dtype,
            rngs=rngs)

    def _logits(self, h: Array) -> Array:
        return self.embed.attend(h) if self.head is None else self.head(h)

    def logits_from_embeddings(self, x: Array, *, capture_calcium: bool = False
                               ) -> tuple[Array, dict[str, Any]]:
        """Embedded tokens ``x [B, T, D]`` -> ``(logits [B, T, V], aux)``."""
        h, aux = self.trunk(x, capture_calcium=capture_calcium)
        return self._logits(h), aux

    def __call__(self, tokens: Array, *, capture_calcium: bool = False
                 ) -> tuple[Array, dict[str, Any]]:
        """``tokens [B, T]`` int -> ``(logits [B, T, V], aux)``; logits at ``t`` predict ``t+1``."""
        self.trunk.check_length(tokens.shape[1])
        return self.logits_from_embeddings(self.embed(tokens), capture_calcium=capture_calcium)

    # ---------------------------------------------------------------- decoding
    def init_decode_state(self, batch_size: int) -> DecodeStates:
        """Empty per-layer decoding states (position 0)."""
        return self.trunk.stack.init_decode_state(batch_size)

    def prefill(self, tokens: Array, states: DecodeStates | None = None
                ) -> tuple[Array, DecodeStates]:
        """Causal pass over ``tokens [B, P]`` -> ``(logits [B, P, V], states)``.

        ``states``: None (position 0) or the per-layer states of an earlier :meth:`prefill` or
        :meth:`step`; the tokens then continue at ``states[0].position`` as if they had been in
        the same prefill (absolute positions included).

        Raises:
          ValueError: ``P > max_len``, or a continuation past ``max_len`` (unchecked when the
            position is traced, as in :meth:`step`).
        """
        self.trunk.check_length(tokens.shape[1])
        start = 0 if states is None else states[0].position
        x = self.trunk.embed_positions(self.embed(tokens), start=start)
        h, states = self.trunk.stack.prefill(x, states)
        return self._logits(h), states

    def step(self, token: Array, states: DecodeStates) -> tuple[Array, DecodeStates]:
        """One token ``[B]`` int at ``states[0].position`` -> ``(logits [B, V], states)``."""
        x = self.trunk.embed_positions(self.embed(token)[:, None], start=states[0].position)
        h, states = self.trunk.stack.step(x[:, 0], states)
        return self._logits(h), states

    def generate(self, prompt_tokens: Array, max_new_tokens: int, *, temperature: float = 0.0,
                 top_k: int | None = None, rng: Array | None = None) -> Array:
        """Continues ``prompt_tokens [B, P]`` by ``max_new_tokens``; returns ``[B, P + N]``.

        The prompt is prefilled once (returning each layer's state), then each new token is one
        :meth:`step`. Dropout is off while generating. Jitted (one compile per shape/setting).

        Args:
          prompt_tokens: ``[B, P]`` int, ``P >= 1``, ``P + max_new_tokens <= max_len``.
          max_new_tokens: ``N >= 0``.
          temperature: 0 = greedy (argmax); > 0 samples from ``softmax(logits / temperature)``.
          top_k: sample among the ``top_k`` most likely tokens only (None = all).
          rng: a PRNG key, required when ``temperature > 0``.

        Raises:
          ValueError: the total length exceeds ``max_len``, sampling without ``rng``, or a
            non-causal model.
        """
        if not self.causal:
            raise ValueError("generate needs a causal model; this AstroLM was built with "
                             "causal=False (a control that sees the future)")
        P = prompt_tokens.shape[1]
        if P < 1 or max_new_tokens < 0 or P + max_new_tokens > self.max_len:
            raise ValueError(f"prompt length {P} + max_new_tokens {max_new_tokens} must be in "
                             f"1..max_len={self.max_len} (with a non-empty prompt)")
        if max_new_tokens == 0:
            return prompt_tokens
        greedy = temperature == 0
        if temperature < 0:
            raise ValueError(f"temperature: expected >= 0, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.vocab_size:
            raise ValueError(f"top_k: expected None or 1..{self.vocab_size}, got {top_k}")
        if not greedy and rng is None:
            raise ValueError("rng (a PRNG key) is required when temperature > 0")
        rng = jax.random.key(0) if rng is None else rng
        graphdef, state = nnx.split(self)
        return _generate(graphdef, state, prompt_tokens, rng, jnp.asarray(temperature or 1.0),
                         max_new_tokens=max_new_tokens, top_k=top_k, greedy=greedy)


def sample_token(logits: Array, key: Array, temperature: Array, *, top_k: int | None,
                 greedy: bool) -> Array:
    """Next token ``[B]`` (int32) from ``logits [B, V]``: argmax, or a (top-k) temperature sample.

    Args:
      logits: ``[B, V]`` next-token logits.
      key: PRNG key of the sample (unused when ``greedy``).
      temperature: scalar divisor of the logits before sampling.
      top_k: keep only the ``top_k`` largest logits per row (ties with the k-th kept); ``None``
        keeps all.
      greedy: take the argmax instead of sampling.
    """
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature.astype(jnp.float32)
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "top_k", "greedy"))
def _generate(graphdef: Any, state: Any, prompt: Array, rng: Array, temperature: Array, *,
              max_new_tokens: int, top_k: int | None, greedy: bool) -> Array:
    model = nnx.merge(graphdef, state)
    model.eval()
    logits, states = model.prefill(prompt)
    keys = jax.random.split(rng, max_new_tokens)

    def body(carry: tuple[Array, DecodeStates], key: Array):
        last_logits, states = carry
        token = sample_token(last_logits, key, temperature, top_k=top_k, greedy=greedy)
        next_logits, states = model.step(token, states)
        return (next_logits, states), token

    _, new = jax.lax.scan(body, (logits[:, -1], states), keys)  # new: [N, B]
    return jnp.concatenate([prompt.astype(jnp.int32), new.T], axis=1)
