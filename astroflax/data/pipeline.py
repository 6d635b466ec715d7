"""Datasets as grain ``MapDataset`` s of examples, and the batch streams the trainer consumes.

Examples are dicts of numpy arrays with explicit dtypes (the test suite runs with strict dtype
promotion and x64 on):

* images: ``{"inputs": float32 [H, W, C], "label": int32 []}``
* text classification: ``{"inputs": int32 [L], "mask": bool [L], "label": int32 []}``
* language modelling: ``{"inputs": int32 [L], "targets": int32 [L]}``

Splits are lazy: an example is read when indexed. Batches are defined globally — one seeded
permutation per epoch of the whole split, cut into global batches — and each JAX process reads
only its rows of each global batch (``rows=(start, stop)``, from the batch sharding; see
:func:`astroflax.train.mesh.process_rows`). So a run sees the same global batches on one
process or on many, and the trainer assembles them into global arrays.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grain
import numpy as np
from absl import logging

from astroflax.data import archives
from astroflax.data import code as code_lib
from astroflax.data import text as text_lib
from astroflax.data import wikitext as wikitext_lib

Example = dict[str, np.ndarray]

# Per-channel statistics of the CIFAR-10 training images (the usual normalisation constants).
_CIFAR_MEAN = np.asarray([0.4914, 0.4822, 0.4465], np.float32)
_CIFAR_STD = np.asarray([0.2470, 0.2435, 0.2616], np.float32)

TFDS_PREPARE_HELP = (
    "TFDS dataset {name!r} (split {split!r}) is not prepared in {data_dir}.\n"
    "Prepare it once on a machine with internet (TensorFlow is needed only for this step):\n"
    "    pip install 'astroflax[prepare]'   # or: pip install tensorflow tensorflow-datasets\n"
    "    tfds build {name} --file_format=array_record --data_dir={data_dir}\n"
    "then copy that folder here (or set --config.data.data_dir=DIR, or TFDS_DATA_DIR). "
    "Training itself reads the array_record files without TensorFlow.\n(cause: {cause})")


class DataNotFoundError(FileNotFoundError):
    """The dataset is not on disk; the message says how to prepare it and where to put it."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A task's splits (whole, lazily read) and what the data fixes about the model.

    Attributes:
      name: dataset name (``digits``, ``cifar10``, ``imdb``, ``wikitext2``).
      task: ``"classification"`` or ``"lm"``.
      train, eval: the splits' examples (see the module docstring); ``num_train`` and
        ``num_eval`` are their lengths.
      model_overrides: keyword arguments the data fixes (``image_size``, ``vocab_size``, ...).
      info: facts for the report (e.g. ``tokenizer``, ``eval_split``).
    """

    name: str
    task: str
    train: grain.MapDataset
    eval: grain.MapDataset
    model_overrides: dict[str, Any]
    info: dict[str, Any]

    @property
    def num_train(self) -> int:
        """Examples in the training split."""
        return len(self.train)

    @property
    def num_eval(self) -> int:
        """Examples in the eval split."""
        return len(self.eval)


def _limit(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, int(limit))


# ---------------------------------------------------------------- digits (offline, real)
def _digits(cfg: Mapping[str, Any]) -> Dataset:
    """scikit-learn's 8×8 handwritten digits (1797 images, UCI), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    # The split is fixed (random_state=0), independent of the run seed, so every run of every
    # config is scored on the same 360 test images.
    x_tr, x_te, y_tr, y_te = train_test_split(d.images, d.target, test_size=0.2,
                                              random_state=0, stratify=d.target)

    def arrays(x: np.ndarray, y: np.ndarray, limit: int | None) -> list[Example]:
        n = _limit(len(x), limit)
        xs = (x[:n, :, :, None] / 16.0).astype(np.float32)  # pixel counts 0..16 -> [0, 1]
        return [{"inputs": xs[i], "label": np.int32(y[i])} for i in range(n)]

    train = arrays(x_tr, y_tr, cfg.get("num_train"))
    test = arrays(x_te, y_te, cfg.get("num_eval"))
    return Dataset("digits", "classification",
                   grain.MapDataset.source(train), grain.MapDataset.source(test),
                   {"image_size": 8, "in_channels": 1, "num_classes": 10},
                   {"eval_split": "test (20%, stratified, random_state=0)"})


# ---------------------------------------------------------------- TFDS sources
def tfds_source(name: str, split: str, data_dir: str | None) -> Any:
    """``tfds.data_source(name, split)`` without downloading; DataNotFoundError when absent."""
    import tensorflow_datasets as tfds

    shown = data_dir or "~/tensorflow_datasets (or $TFDS_DATA_DIR)"
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
        raise DataNotFoundError(TFDS_PREPARE_HELP.format(
            name=name, split=split, data_dir=shown, cause=f"{type(e).__name__}: {e}"[:300])
        ) from None


def _cifar10(cfg: Mapping[str, Any]) -> Dataset:
    """CIFAR-10 (binary release or TFDS ``cifar10``), normalised per channel; crop+flip option."""
    train_src, test_src = archives.release_or_tfds("cifar10", "cifar10", cfg.get("data_dir"),
                                                   tfds_source)

    def prep(ex: Mapping[str, Any]) -> Example:
        img = (np.asarray(ex["image"], np.float32) / 255.0 - _CIFAR_MEAN) / _CIFAR_STD
        return {"inputs": img.astype(np.float32, copy=False), "label": np.int32(ex["label"])}

    n_tr = _limit(len(train_src), cfg.get("num_train"))
    n_te = _limit(len(test_src), cfg.get("num_eval"))
    train = grain.MapDataset.source(train_src)[:n_tr].map(prep)
    test = grain.MapDataset.source(test_src)[:n_te].map(prep)
    return Dataset("cifar10", "classification", train, test,
                   {"image_size": 32, "in_channels": 3, "num_classes": 10},
                   {"eval_split": "test", "augment": bool(cfg.get("augment"))})


def augment_image(ex: Example, rng: np.random.Generator, pad: int = 4) -> Example:
    """Random crop (reflect-padded by ``pad``) and horizontal flip of ``ex["inputs"] [H, W, C]``."""
    img = ex["inputs"]
    H, W, _ = img.shape
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    i, j = rng.integers(0, 2 * pad + 1, size=2)
    img = padded[i:i + H, j:j + W]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return {**ex, "inputs": np.ascontiguousarray(img, dtype=np.float32)}


def _imdb(cfg: Mapping[str, Any]) -> Dataset:
    """IMDB (release or TFDS ``imdb_reviews``): words -> ids (training vocabulary), length L."""
    train_src, test_src = archives.release_or_tfds("imdb", "imdb_reviews", cfg.get("data_dir"),
                                                   tfds_source)
    n_tr = _limit(len(train_src), cfg.get("num_train"))
    n_te = _limit(len(test_src), cfg.get("num_eval"))
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
    if cfg.get("glove_path"):
        overrides.update(glove_path=str(cfg["glove_path"]), vocab=list(vocab.words))
    return Dataset("imdb", "classification", grain.MapDataset.source(train),
                   grain.MapDataset.source(test), overrides,
                   {"eval_split": "test", "tokenizer": "word (training split)",
                    "glove": cfg.get("glove_path")})


def _wikitext2(cfg: Mapping[str, Any]) -> Dataset:
    """WikiText-2 raw, tokenised (GPT-2 BPE or word level) and packed into windows of L."""
    data_dir = cfg.get("data_dir") or "~/tensorflow_datasets/downloads/manual"
    eval_split = cfg.get("eval_split") or "test"
    try:
        lines = {s: wikitext_lib.read_wikitext_split(data_dir, s) for s in ("train", eval_split)}
    except FileNotFoundError as e:
        raise DataNotFoundError(str(e)) from None
    ids, vocab_size, used = wikitext_lib.tokenize_wikitext(
        lines, cfg.get("tokenizer") or "gpt2", cfg.get("vocab_size"))
    length = int(cfg["max_len"])
    logging.info("WikiText-2: %s tokenizer, vocabulary %d, %d train tokens, windows of %d",
                 used, vocab_size, len(ids["train"]), length)
    shortest = min(len(ids["train"]), len(ids[eval_split]))
    if shortest - 1 < length:  # a window needs length + 1 tokens (inputs and shifted targets)
        from astroflax.train.config import ConfigError  # lazy: astroflax.train imports data

        raise ConfigError(f"config.data.max_len: expected at most {shortest - 1} (the shorter "
                          f"WikiText-2 split in use has {shortest} tokens), got {length}")
    train_w = wikitext_lib.pack_windows(ids["train"], length)
    eval_w = wikitext_lib.pack_windows(ids[eval_split], length)
    train_w = train_w[:_limit(len(train_w), cfg.get("num_train"))]
    eval_w = eval_w[:_limit(len(eval_w), cfg.get("num_eval"))]

    def split(w: np.ndarray) -> Example:
        return {"inputs": w[:-1], "targets": w[1:]}

    return Dataset("wikitext2", "lm", grain.MapDataset.source(train_w).map(split),
                   grain.MapDataset.source(eval_w).map(split),
                   {"vocab_size": vocab_size, "max_len": length},
                   {"eval_split": eval_split, "tokenizer": used})


DATASETS: dict[str, Callable[[Mapping[str, Any]], Dataset]] = {
    "digits": _digits, "cifar10": _cifar10, "imdb": _imdb, "wikitext2": _wikitext2,
    "code": code_lib.load_code}


def load_dataset(cfg: Mapping[str, Any]) -> Dataset:
    """The dataset named ``cfg["name"]`` (one of :data:`DATASETS`) with ``cfg``'s options.

    Args:
      cfg: ``name`` plus options: ``data_dir``, ``num_train`` / ``num_eval`` (caps, for smoke
        runs), ``max_len``, ``vocab_size``, ``tokenizer``, ``glove_path``, ``augment``,
        ``eval_split`` (see the dataset functions). Splits are fixed: randomness (shuffling,
        augmentation) belongs to :func:`train_batches`.

    Raises:
      ValueError: unknown name. DataNotFoundError: the files are not prepared.
    """
    name = cfg["name"]
    if name not in DATASETS:
        raise ValueError(f"data.name: unknown dataset {name!r}; allowed: {sorted(DATASETS)}")
    return DATASETS[name](cfg)


def check_rows(rows: tuple[int, int] | None, batch_size: int) -> tuple[int, int]:
    """``rows`` (default: all) validated as this process's block of a global batch.

    The block must be one of equal, aligned pieces: ``stop - start`` divides ``batch_size``
    and ``start``. :func:`astroflax.train.mesh.process_rows` gives such a block for a
    ``jax.make_mesh`` mesh whose batch axes are listed in mesh order (the config check).
    """
    start, stop = (0, batch_size) if rows is None else (int(rows[0]), int(rows[1]))
    local = stop - start
    if not (0 <= start < stop <= batch_size and batch_size % local == 0 and start % local == 0):
        raise ValueError(f"rows={rows}: this process must hold an aligned block of each global "
                         f"batch of {batch_size} (start and batch size divisible by its length); "
                         "check config.mesh.batch_axes against the process layout")
    return start, stop


def train_batches(ds: Dataset, batch_size: int, *, seed: int, augment: bool = False,
                  rows: tuple[int, int] | None = None) -> grain.MapDataset:
    """This process's rows of every global training batch, as an endless random-access dataset.

    Each epoch is a fresh permutation of the whole split (grain's ``shuffle`` reseeds per
    epoch), cut into global batches of ``batch_size``; element ``j`` holds ``rows`` of global
    batch ``j`` and reading it reads only those examples. Augmentation draws from a generator
    seeded by ``(seed + 1, position in the global stream)``. So the global batches do not depend
    on how many processes share them.

    Args:
      ds: the dataset. batch_size: examples per global batch (all processes).
      seed: shuffling and augmentation seed. augment: random crop + flip (images).
      rows: ``(start, stop)``, this process's rows of each global batch (default: all).

    Returns:
      A ``MapDataset`` of dicts of stacked arrays, e.g. ``inputs [stop - start, ...]``.
    """
    start, stop = check_rows(rows, batch_size)
    local = stop - start
    pipe = ds.train.shuffle(seed=seed).repeat()
    if augment:
        pipe = pipe.random_map(augment_image, seed=seed + 1)
    # Global batch g is local batches g*k .. g*k + k-1 (k = batch_size // local); this
    # process keeps number start // local of each.
    return pipe.batch(local, drop_remainder=True)[start // local::batch_size // local]


def train_iterator(ds: Dataset, batch_size: int, *, seed: int, augment: bool = False,
                   rows: tuple[int, int] | None = None) -> grain.DatasetIterator:
    """:func:`train_batches` as a prefetching, checkpointable iterator.

    A restored iterator (``get_state`` / ``set_state``, or orbax via ``grain.checkpoint``)
    yields exactly the batches an uninterrupted one would. Arguments as for
    :func:`train_batches`; yields its elements in order.
    """
    pipe = train_batches(ds, batch_size, seed=seed, augment=augment, rows=rows)
    return iter(pipe.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)))


def num_eval_batches(num_eval: int, batch_size: int) -> int:
    """Global eval batches per pass (every process yields this many, as collectives need)."""
    return math.ceil(num_eval / batch_size)


def eval_batches(ds: Dataset, batch_size: int, rows: tuple[int, int] | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over the eval split in global batches; this process's ``rows`` of each.

    Rows past the end of the split are filled with copies of the first example carrying
    ``weight = 0``, so every batch has the compiled shape and padding never counts.

    Args:
      ds: the dataset. batch_size: examples per global batch.
      rows: ``(start, stop)``, this process's rows of each global batch (default: all).

    Yields:
      Dicts of stacked arrays ``[stop - start, ...]`` plus ``weight`` float32 (1 real, 0 pad).
    """
    start, stop = check_rows(rows, batch_size)
    n = ds.num_eval
    if n == 0:
        raise ValueError(f"{ds.name}: the eval split is empty (check data.num_eval / "
                         "data.eval_split)")
    filler = ds.eval[0]
    for b in range(num_eval_batches(n, batch_size)):
        exs = [ds.eval[i] for i in range(b * batch_size + start, min(b * batch_size + stop, n))]
        weight = np.zeros((stop - start,), np.float32)
        weight[:len(exs)] = 1.0
        exs += [filler] * (stop - start - len(exs))
        batch = {k: np.stack([e[k] for e in exs]) for k in filler}
        batch["weight"] = weight
        yield batch


def describe(ds: Dataset) -> str:
    """One log line: name, task, split sizes and what the data fixes."""
    fixed = {k: v for k, v in ds.model_overrides.items() if k != "vocab"}
    return (f"{ds.name} ({ds.task}): {ds.num_train} train / {ds.num_eval} eval examples; "
            f"model gets {fixed}; {ds.info}")

