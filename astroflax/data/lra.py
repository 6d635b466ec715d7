"""Long Range Arena (Tay et al., ICLR 2021) tasks from LRA's own release files, without TensorFlow.

LRA builds its inputs with TensorFlow (``lra_benchmarks/*/input_pipeline.py`` of
google-research/long-range-arena); these loaders read the same files and apply the same recipes
in numpy. One loader per task, each ``load_lra_<task>(cfg) -> Dataset`` with task
``"classification"``; where the files are looked for: :mod:`astroflax.data.lra_files`.

* **Text** (``lra_text``, :func:`load_lra_text`): IMDB reviews at the byte level, as LRA's
  ``text_classification`` pipeline with ``tokenizer='char'``: the review's bytes with surrounding
  whitespace stripped (TFDS's ``imdb_reviews`` builder strips), as ``ByteTextEncoder`` ids
  (byte ``b`` -> ``b + 1``, 0 pads; 257 ids), the first ``max_len`` kept (default 4 000, the
  paper's 4K; the repository's ``base_tc_config.py`` has 1 000). Read from
  ``aclImdb_v1.tar.gz`` (:func:`astroflax.data.archives.imdb_splits`), else TFDS
  ``imdb_reviews``. LRA has no validation split here: it evaluates on ``test``.
* **Retrieval** (``lra_retrieval``, :func:`load_lra_retrieval`): ACL Anthology Network document
  pairs, the release's ``tsv_data/new_aan_pairs.{train,eval,test}.tsv``: one pair per line,
  five tab-separated fields ``label id1 id2 text1 text2``, no header, no quoting (LRA's
  ``matching/input_pipeline.py`` reads them so; the label as a float, cast to int). Each text is
  byte-encoded as for Text, as stored in the file (LRA's reader unescapes nothing): the first
  ``min(10 000, max_len)`` bytes (LRA cuts at 10 000 bytes, then at ``max_length``).
* **Image** (``lra_image``, :func:`load_lra_image`): CIFAR-10 (binary release, else TFDS) as
  1 024 grey-level tokens, LRA's ``image/input_pipeline.py``: ``tf.image.rgb_to_grayscale``
  (:func:`grey_tokens`) cast to int32, rows first, integer tokens 0-255 (what LRA's Transformers
  read; its ``normalize`` to [0, 1] is only for its CNNs). LRA trains on ``train[:90%]``,
  validates on ``train[90%:]`` and tests on ``test``.
* **Pathfinder-32** (``lra_pathfinder``): :mod:`astroflax.data.lra_pathfinder`.

Examples are ``{"inputs": int32 [L], "mask": bool [L], "label": int32 []}``; Retrieval's hold
the pair: ``inputs int32 [2, L]`` and ``mask bool [2, L]``, row 0 ``text1``, row 1 ``text2``,
each padded on its own. A two-tower model encodes the two rows separately with shared weights
(e.g. by folding them into the batch, ``[B, 2, L] -> [2B, L]``), pools each (masked) and
classifies the pair of pooled vectors (LRA's dual head: ``[u, v, u·v, u − v]``).

Orders and splits: TFDS orders its prepared records by a hash of their keys and LRA slices that
order (``train[:90%]``); without TFDS that order is not available, so the slices here are of the
release's own order (CIFAR-10: ``data_batch_1 .. 5``), and results compare with LRA's in
distribution, not example by example.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grain
import numpy as np
from absl import logging

from astroflax.data import archives
from astroflax.data.base import Dataset, Example, limit
from astroflax.data.lra_files import (
    BYTE_VOCAB,
    IMAGE_LEN,
    PIXEL_VOCAB,
    as_bytes,
    byte_tokens,
    check_image_length,
    corrupt,
    eval_split,
    find_in_release,
    release_missing,
    shuffled,
    text_length,
)
from astroflax.data.lra_pathfinder import load_lra_pathfinder

__all__ = ["grey_tokens", "load_lra_image", "load_lra_pathfinder", "load_lra_retrieval",
           "load_lra_text", "read_aan_pairs"]

#: tf.image.rgb_to_grayscale's luma weights (ITU-R BT.601, rounded to 4 digits).
GREY_WEIGHTS = np.asarray([0.2989, 0.5870, 0.1140], np.float32)
#: Share of CIFAR-10's training images LRA trains on (``train[:90%]``, 45 000 of 50 000).
IMAGE_TRAIN_SHARE = (9, 10)
#: The Retrieval files (the release's ``tsv_data/``; LRA's ``dataset_setup.sh`` renames that
#: folder ``aan/``) per split.
AAN_FILES = {"train": "new_aan_pairs.train.tsv", "validation": "new_aan_pairs.eval.tsv",
             "test": "new_aan_pairs.test.tsv"}
AAN_FOLDERS = ("tsv_data", "aan", "")
#: Lines per file as reported for the release by readers of it (not checked against the files
#: here); another count is logged as a warning.
AAN_ROWS = {"train": 147_086, "validation": 18_090, "test": 17_437}
#: LRA cuts each Retrieval text at this many bytes before encoding it.
AAN_CUT = 10_000
_AAN_FIELDS = (b"label", b"id1", b"id2", b"text1", b"text2")
_BYTES_INFO = "bytes (id = byte + 1, 0 = padding; TFDS ByteTextEncoder, LRA's 'char')"


def _classification(name: str, train: grain.MapDataset, ev: grain.MapDataset, *, vocab: int,
                    length: int, classes: int, info: dict[str, Any]) -> Dataset:
    return Dataset(name, "classification", train, ev,
                   {"vocab_size": vocab, "max_len": length, "num_classes": classes}, info)


def load_lra_text(cfg: Mapping[str, Any]) -> Dataset:
    """LRA Text: IMDB reviews as byte-level ids (see the module docstring).

    Args:
      cfg: ``data_dir``, ``max_len`` (bytes per review, default 4000), ``eval_split``
        (``"test"``, the only one), ``num_train`` / ``num_eval`` caps.

    Returns:
      Examples ``{"inputs": int32 [max_len], "mask": bool [max_len], "label": int32 []}``
      (neg 0, pos 1); the model gets ``vocab_size`` 257, ``max_len``, ``num_classes`` 2.

    Raises:
      DataNotFoundError: neither ``aclImdb_v1.tar.gz`` nor TFDS ``imdb_reviews`` is there, or
        the archive is unreadable. DataConfigError: a bad option.
    """
    length = text_length(cfg)
    split = eval_split(cfg, "lra_text", ("test",))
    data_dir = cfg.get("data_dir")
    # The raw bytes: decoding would replace invalid UTF-8, and LRA encodes the file's bytes.
    splits = archives.imdb_splits(data_dir, raw=True)
    if splits is None:   # TFDS (what LRA itself reads), or the error that names both routes
        splits = archives.release_or_tfds("imdb", "imdb_reviews", data_dir)

    def records(src: Any, cap: int | None) -> list[tuple[bytes, int]]:
        n = limit(len(src), cap)
        return [(as_bytes(src[i]["text"]).strip(), int(src[i]["label"])) for i in range(n)]

    def encode(rec: tuple[bytes, int]) -> Example:
        tokens, mask = byte_tokens(rec[0], length)
        return {"inputs": tokens, "mask": mask, "label": np.int32(rec[1])}

    # Reviews are kept as bytes (about 1.3 kB each) and encoded when read, not as 16 kB arrays.
    train = grain.MapDataset.source(records(splits[0], cfg.get("num_train"))).map(encode)
    test = grain.MapDataset.source(records(splits[1], cfg.get("num_eval"))).map(encode)
    return _classification("lra_text", train, test, vocab=BYTE_VOCAB, length=length, classes=2,
                           info={"eval_split": split, "tokenizer": _BYTES_INFO})


def read_aan_pairs(path: Path, keep: int) -> tuple[np.ndarray, list[tuple[bytes, bytes]]]:
    """One ``new_aan_pairs.*.tsv`` file: labels and the first ``keep`` bytes of both texts.

    Args:
      path: the file (lines of five tab-separated fields: label, id1, id2, text1, text2).
      keep: bytes kept of each text.

    Returns:
      ``(labels int32 [n] (0 or 1), [(text1, text2)] * n)`` in file order.

    Raises:
      DataNotFoundError: a line without the five fields or with a label that is not 0 or 1
        (a truncated file, or not LRA's), naming the file and line.
    """
    labels, texts = [], []
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            fields = raw.rstrip(b"\r\n").split(b"\t")
            if len(fields) != len(_AAN_FIELDS):
                raise corrupt(f"{path}, line {number}", f"{len(fields)} tab-separated fields, "
                              f"expected {len(_AAN_FIELDS)} ({b' '.join(_AAN_FIELDS).decode()})"
                              " (a truncated file, or not LRA's new_aan_pairs file)")
            try:
                label = float(fields[0])
            except ValueError:
                label = -1.0
            if label not in (0.0, 1.0):
                raise corrupt(f"{path}, line {number}",
                              f"label {fields[0][:20]!r} is not 0 or 1 (not LRA's file)")
            labels.append(int(label))
            texts.append((fields[3][:keep], fields[4][:keep]))
    return np.asarray(labels, np.int32), texts


def _aan_folder(data_dir: str | Path | None, splits: tuple[str, ...]) -> Path:
    """The folder with the Retrieval files of ``splits``; DataNotFoundError naming one missing."""
    rels = [f"{d}/{AAN_FILES['train']}" if d else AAN_FILES["train"] for d in AAN_FOLDERS]
    train = find_in_release(data_dir, rels)
    if train is None:
        raise release_missing("LRA Retrieval", f"tsv_data/{AAN_FILES['train']}", data_dir)
    for split in splits:
        if not (train.parent / AAN_FILES[split]).is_file():
            raise release_missing("LRA Retrieval", f"tsv_data/{AAN_FILES[split]} (next to "
                                  f"{train})", data_dir)
    return train.parent


def load_lra_retrieval(cfg: Mapping[str, Any]) -> Dataset:
    """LRA Retrieval: AAN document pairs, each document as byte-level ids (module docstring).

    Args:
      cfg: ``data_dir``, ``max_len`` (bytes per document, default 4000), ``eval_split``
        (``"test"``: ``new_aan_pairs.test.tsv`` | ``"validation"``: ``.eval.tsv``),
        ``num_train`` / ``num_eval`` caps (rows of a fixed seed-0 permutation of the file).

    Returns:
      Examples ``{"inputs": int32 [2, max_len], "mask": bool [2, max_len], "label": int32 []}``
      (row 0 ``text1``, row 1 ``text2``; label 1: the pair is linked by a citation); the model
      gets ``vocab_size`` 257, ``max_len`` (per document), ``num_classes`` 2.

    Raises:
      DataNotFoundError: a file missing, truncated or not LRA's. DataConfigError: a bad option.

    Both splits are read whole at load (the texts cut to ``max_len`` bytes: at most
    ``2 · max_len`` bytes a pair, about 1.2 GB for the 147 086 training pairs at 4 000).
    """
    length = text_length(cfg)
    split = eval_split(cfg, "lra_retrieval", ("test", "validation"))
    folder = _aan_folder(cfg.get("data_dir"), ("train", split))
    keep = min(AAN_CUT, length)

    def rows(name: str, cap: int | None) -> list[tuple[tuple[bytes, bytes], int]]:
        labels, texts = read_aan_pairs(folder / AAN_FILES[name], keep)
        if len(labels) != AAN_ROWS[name]:
            logging.warning("LRA Retrieval %s has %d pairs; the release's has %d: results are "
                            "not comparable with the paper's.", folder / AAN_FILES[name],
                            len(labels), AAN_ROWS[name])
        order = shuffled(len(labels))[:limit(len(labels), cap)]
        return [(texts[i], int(labels[i])) for i in order]

    def encode(row: tuple[tuple[bytes, bytes], int]) -> Example:
        (t1, t2), label = row
        (a, mask_a), (b, mask_b) = byte_tokens(t1, length), byte_tokens(t2, length)
        return {"inputs": np.stack([a, b]), "mask": np.stack([mask_a, mask_b]),
                "label": np.int32(label)}

    train = grain.MapDataset.source(rows("train", cfg.get("num_train"))).map(encode)
    ev = grain.MapDataset.source(rows(split, cfg.get("num_eval"))).map(encode)
    logging.info("LRA Retrieval from %s: %d train / %d %s pairs, %d bytes per document",
                 folder, len(train), len(ev), split, length)
    return _classification("lra_retrieval", train, ev, vocab=BYTE_VOCAB, length=length,
                           classes=2, info={"eval_split": split, "tokenizer": _BYTES_INFO,
                                            "pair": "inputs[:, 0] = text1, inputs[:, 1] = text2",
                                            "source": str(folder)})


def grey_tokens(image: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB -> ``int32 [H·W]`` grey levels, as ``tf.image.rgb_to_grayscale``.

    TF scales to [0, 1] (× 1/255), takes the weighted sum with :data:`GREY_WEIGHTS`, and converts
    back to uint8 by multiplying by 255.5 and truncating (``convert_image_dtype``), all in
    float32; so pure green (0, 255, 0) gives 149, not the rounded 150. Rows first. (A pixel
    whose exact value lies within float32 rounding of an integer may come out one lower or
    higher than TF's, whose summation order may differ.)
    """
    flt = np.asarray(image, np.float32) * np.float32(1.0 / 255.0)
    grey = flt @ GREY_WEIGHTS
    return (grey * np.float32(255.5)).astype(np.int32).reshape(-1)


def load_lra_image(cfg: Mapping[str, Any]) -> Dataset:
    """LRA Image: CIFAR-10 as 1 024 grey-level tokens (see the module docstring).

    Args:
      cfg: ``data_dir``, ``eval_split`` (``"test"`` | ``"validation"``: the last 10 % of the
        training images, which are never trained on), ``num_train`` / ``num_eval`` caps;
        ``max_len`` must be unset (or 1024).

    Returns:
      Examples ``{"inputs": int32 [1024] (0-255), "mask": bool [1024] (all True),
      "label": int32 []}``; the model gets ``vocab_size`` 256, ``max_len`` 1024,
      ``num_classes`` 10.

    Raises:
      DataNotFoundError: neither the CIFAR-10 binary release nor TFDS ``cifar10`` is there, or
        the archive is unreadable. DataConfigError: a bad option.
    """
    check_image_length(cfg, "lra_image")
    split = eval_split(cfg, "lra_image", ("test", "validation"))
    train_src, test_src = archives.release_or_tfds("cifar10", "cifar10", cfg.get("data_dir"))
    n_fit = len(train_src) * IMAGE_TRAIN_SHARE[0] // IMAGE_TRAIN_SHARE[1]
    mask = np.ones((IMAGE_LEN,), bool)

    def prep(ex: Mapping[str, Any]) -> Example:
        return {"inputs": grey_tokens(ex["image"]), "mask": mask,
                "label": np.int32(ex["label"])}

    source = grain.MapDataset.source(train_src)
    train = source[:n_fit]
    ev = grain.MapDataset.source(test_src) if split == "test" else source[n_fit:]
    train = train[:limit(len(train), cfg.get("num_train"))].map(prep)
    ev = ev[:limit(len(ev), cfg.get("num_eval"))].map(prep)
    return _classification("lra_image", train, ev, vocab=PIXEL_VOCAB, length=IMAGE_LEN,
                           classes=10, info={"eval_split": split, "train": "train[:90%]",
                                             "tokenizer": "grey level 0-255 "
                                                          "(tf.image.rgb_to_grayscale)"})
