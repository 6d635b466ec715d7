"""WikiText-2 (raw release, Merity et al. 2016): reading, tokenising and packing into windows.

The official raw release is ``wikitext-2-raw-v1.zip`` holding ``wikitext-2-raw/wiki.{train,
valid,test}.raw`` (about 2 M words). The loader reads either that zip or a folder with the
three files, keeping line order. Tokens are GPT-2 BPE (``tiktoken``, as in the paper) when its
vocabulary can be loaded, else the standard word-level scheme of the WikiText benchmarks:
whitespace-separated words plus ``<eos>`` at each line end, the vocabulary from the training
split, other words ``<unk>``. Which one was used is returned so the run can report it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grain
import numpy as np
from absl import logging

from astroflax.data.base import DataConfigError, DataNotFoundError, Dataset, Example, limit
from astroflax.data.text import EOS, UNK, WordVocab, build_vocab

SPLIT_FILES = {"train": "wiki.train.raw", "validation": "wiki.valid.raw",
               "test": "wiki.test.raw"}
ZIP_NAME = "wikitext-2-raw-v1.zip"
# Lines per split of the official raw release (the row counts of every published copy, e.g.
# the Hugging Face `wikitext-2-raw-v1` card). The release's checksum is not known offline, so
# the line count is the integrity check: a truncated or different file is reported, not used
# silently.
OFFICIAL_LINES = {"train": 36_718, "validation": 3_760, "test": 4_358}

PREPARE_HELP = (
    "WikiText-2 is read from the official raw release. Download wikitext-2-raw-v1.zip "
    "(e.g. from the Salesforce/wikitext dataset card, or the original S3 link in "
    "Merity et al. 2016) and put the zip, or its wikitext-2-raw/ folder with wiki.train.raw, "
    "wiki.valid.raw and wiki.test.raw, in {data_dir} (set --config.data.data_dir=DIR).")


def read_wikitext_split(data_dir: str | Path, split: str) -> list[str]:
    """Lines (with their newlines, in file order) of one split of the raw release.

    Args:
      data_dir: a folder holding ``wikitext-2-raw-v1.zip``, or ``wiki.*.raw`` files directly or
        under ``wikitext-2-raw/``.
      split: ``"train" | "validation" | "test"``.

    Raises:
      FileNotFoundError: none of those layouts is present (the message says how to get them).
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split: expected one of {sorted(SPLIT_FILES)}, got {split!r}")
    d = Path(data_dir).expanduser()
    name = SPLIT_FILES[split]
    lines = None
    for candidate in (d / name, d / "wikitext-2-raw" / name):
        if candidate.is_file():
            lines = candidate.read_text(encoding="utf-8").splitlines(keepends=True)
            break
    if lines is None and (d / ZIP_NAME).is_file():
        with zipfile.ZipFile(d / ZIP_NAME) as z:
            lines = z.read(f"wikitext-2-raw/{name}").decode("utf-8").splitlines(keepends=True)
    if lines is None:
        raise FileNotFoundError(PREPARE_HELP.format(data_dir=d))
    if len(lines) != OFFICIAL_LINES[split]:
        logging.warning("WikiText-2 %s split in %s has %d lines; the official raw release has "
                        "%d: this is not (all of) wikitext-2-raw-v1, so results are not "
                        "comparable with the paper's.", split, d, len(lines),
                        OFFICIAL_LINES[split])
    return lines


def load_gpt2_encoding():
    """The GPT-2 BPE encoding from ``tiktoken``, or None with the reason logged.

    tiktoken downloads ``vocab.bpe`` / ``encoder.json`` on first use and caches them (set
    ``TIKTOKEN_CACHE_DIR`` to a folder holding them to work offline).
    """
    try:
        import tiktoken

        return tiktoken.get_encoding("gpt2")
    except Exception as e:
        logging.warning("GPT-2 BPE vocabulary could not be loaded (%s: %s); falling back to "
                        "the word-level WikiText vocabulary.", type(e).__name__, str(e)[:200])
        return None


def _words(lines: list[str]) -> list[str]:
    # Empty lines carry no words and, as in the standard word-level pipeline, no <eos>.
    out: list[str] = []
    for line in lines:
        words = line.split()
        if words:
            out.extend(words)
            out.append(EOS)
    return out


def tokenize_wikitext(splits: dict[str, list[str]], tokenizer: str,
                      vocab_size: int | None = None) -> tuple[dict[str, np.ndarray], int, str]:
    """Token ids of each split (one flat stream per split, in line order).

    Args:
      splits: split name -> lines, including ``"train"``.
      tokenizer: ``"gpt2"`` (falls back to words when BPE cannot be loaded) or ``"word"``.
      vocab_size: word level only: cap on the vocabulary (None = every training word).

    Returns:
      ``(ids, vocab_size, tokenizer_used)``: ``ids[split]`` int32 ``[n_tokens]``;
      ``tokenizer_used`` is ``"gpt2"`` or ``"word"``.
    """
    if tokenizer not in ("gpt2", "word"):
        raise ValueError(f"tokenizer: expected 'gpt2' or 'word', got {tokenizer!r}")
    enc = load_gpt2_encoding() if tokenizer == "gpt2" else None
    if enc is not None:
        ids = {k: np.asarray(enc.encode_ordinary("".join(v)), dtype=np.int32)
               for k, v in splits.items()}
        return ids, int(enc.n_vocab), "gpt2"
    vocab = word_vocab(splits["train"], vocab_size)
    return {k: vocab.encode(_words(v)) for k, v in splits.items()}, len(vocab), "word"


def word_vocab(train_lines: list[str], vocab_size: int | None = None) -> WordVocab:
    """The word-level vocabulary of the training lines: ``<eos>``, ``<unk>``, then by count."""
    return build_vocab([_words(train_lines)], max_size=vocab_size, specials=(EOS, UNK))


def pack_windows(ids: np.ndarray, length: int) -> np.ndarray:
    """Contiguous non-overlapping windows ``[n, length + 1]`` of the stream ``ids [N]``.

    Window ``i`` is ``ids[i·length : i·length + length + 1]``: inputs are its first ``length``
    tokens and targets its last ``length``, so every token of the stream (but the first) is
    predicted exactly once; the incomplete tail is dropped.
    """
    n = (len(ids) - 1) // length
    if n < 1:
        raise ValueError(f"a stream of {len(ids)} tokens is too short for windows of {length}")
    idx = np.arange(n)[:, None] * length + np.arange(length + 1)[None, :]
    return ids[idx].astype(np.int32)


def load_wikitext2(cfg: Mapping[str, Any]) -> Dataset:
    """WikiText-2 raw, tokenised (GPT-2 BPE or word level) and packed into windows of L."""
    data_dir = cfg.get("data_dir") or "~/tensorflow_datasets/downloads/manual"
    eval_split = cfg.get("eval_split") or "test"
    try:
        lines = {s: read_wikitext_split(data_dir, s) for s in ("train", eval_split)}
    except FileNotFoundError as e:
        raise DataNotFoundError(str(e)) from None
    ids, vocab_size, used = tokenize_wikitext(
        lines, cfg.get("tokenizer") or "gpt2", cfg.get("vocab_size"))
    length = int(cfg["max_len"])
    logging.info("WikiText-2: %s tokenizer, vocabulary %d, %d train tokens, windows of %d",
                 used, vocab_size, len(ids["train"]), length)
    shortest = min(len(ids["train"]), len(ids[eval_split]))
    if shortest - 1 < length:  # a window needs length + 1 tokens (inputs and shifted targets)
        raise DataConfigError(f"data.max_len: expected at most {shortest - 1} (the shorter "
                          f"WikiText-2 split in use has {shortest} tokens), got {length}")
    train_w = pack_windows(ids["train"], length)
    eval_w = pack_windows(ids[eval_split], length)
    train_w = train_w[:limit(len(train_w), cfg.get("num_train"))]
    eval_w = eval_w[:limit(len(eval_w), cfg.get("num_eval"))]

    def split(w: np.ndarray) -> Example:
        return {"inputs": w[:-1], "targets": w[1:]}

    return Dataset("wikitext2", "lm", grain.MapDataset.source(train_w).map(split),
                   grain.MapDataset.source(eval_w).map(split),
                   {"vocab_size": vocab_size, "max_len": length},
                   {"eval_split": eval_split, "tokenizer": used})
