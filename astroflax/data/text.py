"""Word-level tokenisation and vocabularies (IMDB, and WikiText-2 when GPT-2 BPE is unavailable)."""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"

# IMDB reviews carry HTML line breaks; words keep inner apostrophes ("don't") so common
# contractions stay one token, as GloVe's vocabulary has them.
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize_words(text: str | bytes) -> list[str]:
    """Lower-cased words and single punctuation marks of ``text`` (bytes are UTF-8 decoded)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return _WORD.findall(_BREAK.sub(" ", text).lower())


@dataclasses.dataclass(frozen=True)
class WordVocab:
    """A word -> id table; ids follow ``words`` (``words[0]`` is padding when ``PAD`` is used).

    Attributes:
      words: the vocabulary in id order.
      unk_id: the id of out-of-vocabulary words.
    """

    words: tuple[str, ...]
    unk_id: int

    def __post_init__(self):
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Word ids ``[n]`` int32 of ``tokens`` (unknown words -> ``unk_id``)."""
        index = self._index  # type: ignore[attr-defined]
        return np.fromiter((index.get(t, self.unk_id) for t in tokens), dtype=np.int32)


def build_vocab(texts: Iterable[Sequence[str]], *, max_size: int | None,
                specials: Sequence[str] = (PAD, UNK), min_count: int = 1) -> WordVocab:
    """The ``max_size`` most frequent words of ``texts`` after ``specials`` (ties by word).

    Args:
      texts: tokenised documents (lists of words).
      max_size: total vocabulary size including specials (None = every word).
      specials: tokens placed first, in order; must contain ``UNK``.
      min_count: words seen fewer times are left out.

    Returns:
      A deterministic :class:`WordVocab`: the same texts give the same ids in any process.
    """
    if UNK not in specials:
        raise ValueError(f"specials must contain {UNK!r}, got {list(specials)}")
    counts: collections.Counter[str] = collections.Counter()
    for words in texts:
        counts.update(words)
    for s in specials:
        counts.pop(s, None)
    # Sorting by (-count, word) rather than Counter.most_common keeps ties deterministic.
    ranked = sorted((w for w, c in counts.items() if c >= min_count),
                    key=lambda w: (-counts[w], w))
    if max_size is not None:
        if max_size <= len(specials):
            raise ValueError(f"max_size={max_size} leaves no room after specials {list(specials)}")
        ranked = ranked[: max_size - len(specials)]
    words = (*specials, *ranked)
    return WordVocab(words=words, unk_id=words.index(UNK))


def pad_or_truncate(ids: np.ndarray, length: int, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``ids [n]`` -> ``(tokens [length] int32, mask [length] bool)``, keeping the first words."""
    out = np.full((length,), pad_id, dtype=np.int32)
    n = min(len(ids), length)
    out[:n] = ids[:n]
    mask = np.zeros((length,), dtype=bool)
    mask[:n] = True
    return out, mask
