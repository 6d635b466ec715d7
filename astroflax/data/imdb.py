"""IMDB reviews (Maas et al. 2011; release archive or TFDS ``imdb_reviews``) as word ids.

Examples: ``{"inputs": int32 [L], "mask": bool [L], "label": int32 []}`` (neg 0, pos 1). With
``data.glove_path`` the dataset also carries the GloVe vectors of its vocabulary
(``Dataset.pretrained``), which the trainer copies into the model's token table after init.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grain
import numpy as np
from absl import logging

from astroflax.data import archives
from astroflax.data import text as text_lib
from astroflax.data.base import Dataset, Example, limit
from astroflax.data.glove import load_glove


def load_imdb(cfg: Mapping[str, Any]) -> Dataset:
    """IMDB (release or TFDS ``imdb_reviews``): words -> ids (training vocabulary), length L."""
    train_src, test_src = archives.release_or_tfds("imdb", "imdb_reviews", cfg.get("data_dir"))
    n_tr = limit(len(train_src), cfg.get("num_train"))
    n_te = limit(len(test_src), cfg.get("num_eval"))
    # The vocabulary comes from the training reviews in use (all of them unless data.num_train
    # caps it; every process builds the same table), never from the test split. Reviews are
    # tokenised and encoded once here, not on every read of every epoch.
    train_recs = [train_src[i] for i in range(n_tr)]
    test_recs = [test_src[i] for i in range(n_te)]
    train_words = [text_lib.tokenize_words(r["text"]) for r in train_recs]
    vocab = text_lib.build_vocab(train_words, max_size=cfg.get("vocab_size"))
    length = int(cfg["max_len"])
    logging.info("IMDB: vocabulary of %d words from %d training reviews; length %d",
                 len(vocab), n_tr, length)

    def encoded(words: list[list[str]], recs: list[Mapping[str, Any]]) -> list[Example]:
        out = []
        for w, r in zip(words, recs, strict=True):
            tokens, mask = text_lib.pad_or_truncate(vocab.encode(w), length)
            out.append({"inputs": tokens, "mask": mask, "label": np.int32(r["label"])})
        return out

    train = encoded(train_words, train_recs)
    test = encoded([text_lib.tokenize_words(r["text"]) for r in test_recs], test_recs)
    overrides: dict[str, Any] = {"vocab_size": len(vocab), "max_len": length, "num_classes": 2}
    pretrained = None
    if cfg.get("glove_path"):
        vectors, found = load_glove(cfg["glove_path"], vocab.words)
        logging.info("GloVe %s: %d-d vectors for %d of %d words", cfg["glove_path"],
                     vectors.shape[1], int(found.sum()), len(vocab))
        pretrained = {"embedding": vectors, "found": found}
    return Dataset("imdb", "classification", grain.MapDataset.source(train),
                   grain.MapDataset.source(test), overrides,
                   {"eval_split": "test", "tokenizer": "word (training split)",
                    "glove": cfg.get("glove_path")}, pretrained=pretrained)
