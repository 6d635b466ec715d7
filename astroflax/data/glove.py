"""GloVe-format word vectors (``word v_1 ... v_dim`` per line) for a vocabulary.

Read once by the dataset that needs them (IMDB with ``data.glove_path``) and handed to the
trainer as ``Dataset.pretrained``, which copies them into the model's token table after the
model is built (:meth:`astroflax.nn.TokenEmbedding.load_vectors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def load_glove(path: str | Path, vocab: Sequence[str], dim: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Reads a GloVe-format text file (``word v_1 ... v_dim`` per line) for a vocabulary.

    Words containing spaces (GloVe 840B has a few) are handled by taking the last ``dim``
    fields as the vector. A word2vec-style header line (``count dim``) is skipped. Lookup is
    exact first, then lower-cased.

    Args:
      path: the text file. vocab: token strings indexed by token id (``len = V``).
      dim: the expected vector dimension (None: the file's own, read from its first vector).

    Returns:
      ``(vectors [V, dim] float32 (zeros where missing), found [V] bool)``.

    Raises:
      ValueError: the file's vectors do not have ``dim`` components (says which it has), or the
        file is empty.
    """
    index = {word: i for i, word in enumerate(vocab)}
    lower = {}
    for i, word in enumerate(vocab):
        lower.setdefault(word.lower(), i)
    vectors = None
    found = np.zeros((len(vocab),), bool)
    exact = np.zeros((len(vocab),), bool)
    file_dim = None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if line_no == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if file_dim is None:
                file_dim = len(parts) - 1
                if dim is None:
                    dim = file_dim
                vectors = np.zeros((len(vocab), dim), np.float32)
                if file_dim != dim:
                    raise ValueError(
                        f"GloVe file {path}: vectors have dimension {file_dim}, but the "
                        f"embedding expects embed_dim={dim}; allowed: a file of {dim}-d vectors "
                        f"(or set embed_dim={file_dim})")
            if len(parts) < dim + 1:
                continue
            word = " ".join(parts[:-dim])
            i = index.get(word)
            is_exact = i is not None
            if i is None:
                i = lower.get(word.lower())
            if i is None or exact[i] or (found[i] and not is_exact):
                continue
            vectors[i] = np.asarray(parts[-dim:], np.float32)
            found[i], exact[i] = True, is_exact
    if file_dim is None:
        raise ValueError(f"GloVe file {path} holds no vectors")
    return vectors, found
