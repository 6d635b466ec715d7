"""Text from a trained language model: ``python -m experiments.generate --workdir=W --prompt=...``.

    python -m experiments.generate --workdir=runs/wikitext2_astro --prompt="The history of"
    python -m experiments.generate --workdir=W --prompt="The" --max_new_tokens=100 \
        --temperature=0.8 --top_k=40 --seed=1 --step=latest

The prompt goes through the tokenizer the run used (GPT-2 BPE, or the word-level WikiText
vocabulary rebuilt from the run's training split), is prefilled once, and each new token is one
step of the model's recurrent decoder (:meth:`astroflax.models.AstroLM.step`), printed as soon
as it is drawn. ``--temperature=0`` (the default) is greedy; with the same ``--seed`` the tokens
are exactly those of ``AstroLM.generate(prompt, N, temperature=T, top_k=K,
rng=jax.random.key(seed))``.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import nnx
from jax import Array

from astroflax.models.lm import sample_token
from astroflax.train.load import TrainedRun, load_run


def define_flags() -> None:
    """The command's flags, defined only when it runs as a command.

    ``--workdir`` and ``--step`` are also flags of other commands (``experiments.run``,
    ``experiments.evaluate``), and absl refuses a name defined twice in one process.
    """
    flags.DEFINE_string("workdir", None, "Run directory of a language model.")
    flags.DEFINE_string("prompt", None, "Text to continue (non-empty).")
    flags.DEFINE_integer("max_new_tokens", 50, "Tokens to generate.")
    flags.DEFINE_float("temperature", 0.0, "0 = greedy; > 0 samples.")
    flags.DEFINE_integer("top_k", None, "Sample among the K most likely tokens only.")
    flags.DEFINE_integer("seed", 0, "Sampling seed.")
    flags.DEFINE_string("step", "best", "best, latest, or a checkpoint step number.")


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """The run's tokenizer: text -> ids, and each id's bytes (UTF-8 text, possibly partial).

    Attributes:
      name: ``"gpt2"`` or ``"word"``. vocab_size: number of ids.
      encode: text -> token ids. token_bytes: one id -> the bytes it adds to the text.
    """

    name: str
    vocab_size: int
    encode: Callable[[str], list[int]]
    token_bytes: Callable[[int], bytes]

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids`` (invalid UTF-8 shown as U+FFFD)."""
        return b"".join(self.token_bytes(int(i)) for i in ids).decode("utf-8", "replace")


def run_tokenizer(run: TrainedRun) -> Tokenizer:
    """The tokenizer ``run`` was trained with (its dataset's ``info["tokenizer"]``).

    Word level: the vocabulary of the run's WikiText-2 training split and ``data.vocab_size``;
    a prompt is split on whitespace (as the corpus was), unknown words become ``<unk>``, and
    ``<eos>`` is printed as a line end.

    Raises:
      ValueError: not a language model, or a tokenizer this command cannot rebuild.
    """
    from astroflax.data import wikitext
    from astroflax.data.text import EOS

    name = run.dataset.info.get("tokenizer")
    if run.dataset.task != "lm":
        raise ValueError(f"{run.workdir} is a {run.dataset.task} run ({run.dataset.name}); "
                         "generate needs a language model (e.g. a wikitext2_* config)")
    if name == "gpt2":
        enc = wikitext.load_gpt2_encoding()
        if enc is None:
            raise ValueError("the run used GPT-2 BPE but tiktoken's vocabulary cannot be loaded")
        return Tokenizer("gpt2", int(enc.n_vocab), enc.encode_ordinary,
                         enc.decode_single_token_bytes)
    if name == "word" and run.dataset.name == "wikitext2":
        data = run.config.data
        lines = wikitext.read_wikitext_split(
            data.get("data_dir") or "~/tensorflow_datasets/downloads/manual", "train")
        vocab = wikitext.word_vocab(lines, data.get("vocab_size"))
        pieces = [b"\n" if w == EOS else (" " + w).encode() for w in vocab.words]
        return Tokenizer("word", len(vocab), lambda text: vocab.encode(text.split()).tolist(),
                         pieces.__getitem__)
    raise ValueError(f"tokenizer {name!r} of dataset {run.dataset.name!r}: generate knows "
                     "'gpt2' and WikiText-2's 'word'")


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _prefill(graphdef: nnx.GraphDef, state: nnx.State, prompt: Array) -> tuple[Array, Any]:
    model = nnx.merge(graphdef, state)
    model.eval()
    logits, states = model.prefill(prompt)
    return logits[:, -1], states


@functools.partial(jax.jit, static_argnames=("graphdef", "top_k", "greedy"))
def _next(graphdef: nnx.GraphDef, state: nnx.State, logits: Array, states: Any, key: Array,
          temperature: Array, *, top_k: int | None, greedy: bool
          ) -> tuple[Array, Array, Any]:
    model = nnx.merge(graphdef, state)
    model.eval()
    token = sample_token(logits, key, temperature, top_k=top_k, greedy=greedy)
    next_logits, states = model.step(token, states)
    return token, next_logits, states


def stream_tokens(model: nnx.Module, prompt: list[int], max_new_tokens: int, *,
                  temperature: float = 0.0, top_k: int | None = None, seed: int = 0
                  ) -> Iterator[int]:
    """Yields ``max_new_tokens`` token ids continuing ``prompt``, one per decoder step.

    Args:
      model: an :class:`astroflax.models.AstroLM` (anything with ``prefill`` / ``step``).
      prompt: ``P >= 1`` token ids, ``P + max_new_tokens <= model.max_len``.
      temperature: 0 = greedy; > 0 samples from ``softmax(logits / temperature)``.
      top_k: sample among the ``top_k`` most likely tokens only (None = all).
      seed: token ``i`` draws with ``jax.random.split(jax.random.key(seed), N)[i]``, the keys
        of ``AstroLM.generate``.

    Raises:
      ValueError: an empty or too long prompt, a negative temperature, a bad ``top_k``.
    """
    P, vocab = len(prompt), int(model.vocab_size)
    if P < 1:
        raise ValueError("the prompt gives no tokens; give some text to continue")
    if max_new_tokens < 0 or P + max_new_tokens > model.max_len:
        raise ValueError(f"prompt of {P} tokens + max_new_tokens {max_new_tokens} exceeds the "
                         f"model's max_len={model.max_len}; shorten the prompt or lower "
                         "--max_new_tokens")
    if temperature < 0:
        raise ValueError(f"temperature: expected >= 0, got {temperature}")
    if top_k is not None and not 1 <= top_k <= vocab:
        raise ValueError(f"top_k: expected None or 1..{vocab}, got {top_k}")
    if max_new_tokens == 0:
        return
    greedy = temperature == 0
    graphdef, state = nnx.split(model)
    keys = jax.random.split(jax.random.key(seed), max_new_tokens)
    temp = jnp.asarray(temperature or 1.0)
    logits, states = _prefill(graphdef, state, jnp.asarray([prompt], jnp.int32))
    for i in range(max_new_tokens):
        token, logits, states = _next(graphdef, state, logits, states, keys[i], temp,
                                      top_k=top_k, greedy=greedy)
        yield int(token[0])


def generate_text(workdir: str | Path, prompt: str, max_new_tokens: int = 50, *,
                  temperature: float = 0.0, top_k: int | None = None, seed: int = 0,
                  step: int | str | None = "best", out: Any = None) -> str:
    """Writes ``prompt`` and its continuation to ``out`` (default stdout) as tokens arrive.

    Returns:
      The generated text (without the prompt).

    Raises:
      ValueError: not a language model, or a prompt/setting :func:`stream_tokens` refuses.
    """
    out = sys.stdout if out is None else out
    run = load_run(workdir, step)
    tok = run_tokenizer(run)
    if tok.vocab_size != run.model.vocab_size:
        raise ValueError(f"the {tok.name} tokenizer rebuilt here has {tok.vocab_size} ids but "
                         f"the model has {run.model.vocab_size}: is the data the run's?")
    tokens = stream_tokens(run.model, tok.encode(prompt), max_new_tokens,
                           temperature=temperature, top_k=top_k, seed=seed)
    out.write(prompt)
    out.flush()
    text = write_stream((tok.token_bytes(t) for t in tokens), out)
    out.write("\n")
    out.flush()
    return text


def write_stream(pieces: Iterable[bytes], out: Any) -> str:
    """Writes the UTF-8 text of ``pieces`` to ``out`` as each arrives; returns the whole text.

    One write (and flush) per piece, of the characters it completes: a character whose bytes
    span several BPE tokens appears with its last byte, never as two replacement marks. Bytes
    left incomplete at the end are written as U+FFFD in one last write.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = []
    for piece in pieces:
        text.append(decoder.decode(piece))
        out.write(text[-1])
        out.flush()
    text.append(decoder.decode(b"", final=True))
    out.write(text[-1])
    out.flush()
    return "".join(text)


def main(argv: list[str]) -> None:
    """Generates; exits non-zero with a one-line message on expected failures."""
    del argv
    from astroflax.data import DataNotFoundError

    f = flags.FLAGS
    if not f.workdir or f.prompt is None:
        sys.exit("error: --workdir (a language-model run) and --prompt are required")
    try:
        generate_text(f.workdir, f.prompt, f.max_new_tokens, temperature=f.temperature,
                      top_k=f.top_k, seed=f.seed, step=f.step)
    except (FileNotFoundError, ValueError, DataNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
