"""CIFAR-10 and IMDB read from their original release archives, without TensorFlow.

* CIFAR-10: ``cifar-10-binary.tar.gz`` (the "binary version" of
  https://www.cs.toronto.edu/~kriz/cifar.html), holding ``cifar-10-batches-bin/
  data_batch_{1..5}.bin`` (training) and ``test_batch.bin``: fixed records of 3073 bytes, one
  label byte (0-9) then the 1024 red, 1024 green and 1024 blue bytes of a 32×32 image, rows
  first. Read with numpy. The Python-pickle release is deliberately not read: unpickling a
  downloaded file runs whatever code it holds.
* IMDB: ``aclImdb_v1.tar.gz`` (Maas et al. 2011, https://ai.stanford.edu/~amaas/data/sentiment/),
  one review per file ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``; ``unsup/`` (the
  unlabelled reviews) is ignored. Labels as TFDS ``imdb_reviews``: neg 0, pos 1. Reviews come
  in one fixed order (sorted paths, then a seed-0 permutation), so a cap such as
  ``data.num_train=64`` keeps both classes.

Each archive, or the folder it extracts to, is looked for in ``data.data_dir`` and its
``downloads/manual/``, or without a ``data_dir`` in the TFDS manual-download folder
(``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``, then ``downloads/manual/``). The splits come
back as sequences of records shaped like TFDS's (``{"image": uint8 [32, 32, 3], "label": int}``,
``{"text": str, "label": int}``), so the pipeline treats both sources alike. Record counts are
checked against the official ones; a different count is logged as a warning (results are then
not comparable with the paper's), a truncated record or an unreadable archive is an error.
"""

from __future__ import annotations

import os
import re
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from astroflax.data.base import DataNotFoundError, tfds_source

CIFAR10_ARCHIVE, CIFAR10_FOLDER = "cifar-10-binary.tar.gz", "cifar-10-batches-bin"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
IMDB_ARCHIVE, IMDB_FOLDER = "aclImdb_v1.tar.gz", "aclImdb"
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
#: Records per split of the official releases.
OFFICIAL_COUNTS = {"cifar10": {"train": 50_000, "test": 10_000},
                   "imdb": {"train": 25_000, "test": 25_000}}
#: One CIFAR-10 record: the label byte, then 3 × 32 × 32 pixel bytes.
CIFAR10_RECORD = 1 + 3 * 32 * 32

_CIFAR_FILE = re.compile(r"(?:^|/)(data_batch_([1-5])|test_batch)\.bin$")
_IMDB_FILE = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+\.txt)$")


def search_dirs(data_dir: str | Path | None) -> list[Path]:
    """Folders looked in for a release archive (see the module docstring), in order."""
    if data_dir:
        roots = [Path(data_dir).expanduser()]
    else:
        roots = [Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()]
    return [p for r in roots for p in (r, r / "downloads" / "manual")]


def missing_help(name: str, data_dir: str | Path | None) -> str:
    """The first line of the missing-dataset error: where to put the release archive."""
    archive, folder, url = ((CIFAR10_ARCHIVE, CIFAR10_FOLDER, CIFAR10_URL) if name == "cifar10"
                            else (IMDB_ARCHIVE, IMDB_FOLDER, IMDB_URL))
    dirs = ", ".join(str(d) for d in search_dirs(data_dir))
    return (f"{name} was found neither as its release archive nor as a prepared TFDS dataset. "
            f"Either (no TensorFlow needed) download {url} and put {archive} (or the {folder}/ "
            f"folder it extracts to) in one of: {dirs} (or set --config.data.data_dir=DIR).")


def _bad(message: str) -> Exception:
    return DataNotFoundError(message + "; download the release again")


def _find(archive: str, folder: str, data_dir: str | Path | None) -> Path | None:
    for d in search_dirs(data_dir):
        for candidate in (d / archive, d / folder):
            if candidate.exists():
                return candidate
    return None


def _members(source: Path, pattern: re.Pattern[str]) -> Iterator[tuple[re.Match[str], bytes]]:
    """``(match, bytes)`` of each file of ``source`` (a .tar.gz or a folder) matching ``pattern``.

    Raises:
      DataNotFoundError: an archive that cannot be read to its end (corrupt or truncated).
    """
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            m = pattern.search(path.relative_to(source.parent).as_posix())
            if m and path.is_file():
                yield m, path.read_bytes()
        return
    try:
        with tarfile.open(source, "r:gz") as tar:
            for member in tar:
                m = pattern.search(member.name)
                if m and member.isfile():
                    f = tar.extractfile(member)
                    yield m, f.read() if f is not None else b""
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise _bad(f"{source} is not a readable .tar.gz archive ({type(e).__name__}: "
                   f"{str(e)[:200]})") from None


def _check_count(name: str, split: str, n: int, source: Path) -> None:
    official = OFFICIAL_COUNTS[name][split]
    if n != official:
        logging.warning("%s %s split in %s has %d records; the official release has %d: this "
                        "is not (all of) the official %s, so results are not comparable with "
                        "the paper's.", name, split, source, n, official, name)


class ImageRecords(Sequence):
    """Random access to images ``uint8 [N, 32, 32, 3]`` and labels ``[N]`` as TFDS-like records."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        """``images [N, H, W, C]`` uint8 and ``labels [N]`` (int)."""
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        return {"image": self.images[i], "label": int(self.labels[i])}


def parse_cifar10_records(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One ``*.bin`` file of the binary release -> ``(images uint8 [n, 32, 32, 3], labels [n])``.

    Raises:
      DataNotFoundError: a size that is not a whole number of records, or a label outside 0-9.
    """
    if len(data) % CIFAR10_RECORD:
        raise _bad(f"{where}: {len(data)} bytes is not a whole number of {CIFAR10_RECORD}-byte "
                   f"records (a truncated record: {len(data) % CIFAR10_RECORD} bytes left over)")
    records = np.frombuffer(data, np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.size and labels.max() > 9:
        raise _bad(f"{where}: label byte {int(labels.max())} outside 0-9 (not CIFAR-10 records)")
    # Each record stores the three 32×32 planes one after the other: [C, H, W] -> [H, W, C].
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def cifar10_splits(data_dir: str | Path | None) -> tuple[ImageRecords, ImageRecords] | None:
    """``(train, test)`` of the CIFAR-10 binary release, or None when it is not found.

    Raises:
      DataNotFoundError: unreadable archive, truncated record, or no ``*.bin`` file in it.
    """
    source = _find(CIFAR10_ARCHIVE, CIFAR10_FOLDER, data_dir)
    if source is None:
        return None
    parts: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    for m, data in _members(source, _CIFAR_FILE):
        images, labels = parse_cifar10_records(data, f"{source}: {m.group(1)}.bin")
        batch = int(m.group(2)) if m.group(2) else 0
        parts["test" if m.group(1) == "test_batch" else "train"].append((batch, images, labels))
    if not parts["train"] and not parts["test"]:
        raise _bad(f"{source} holds no data_batch_*.bin / test_batch.bin: not the CIFAR-10 "
                   f"binary release ({CIFAR10_URL})")
    out = []
    for split in ("train", "test"):
        chunks = sorted(parts[split], key=lambda c: c[0])   # data_batch_1 .. 5, in order
        images = (np.concatenate([c[1] for c in chunks]) if chunks
                  else np.zeros((0, 32, 32, 3), np.uint8))
        labels = np.concatenate([c[2] for c in chunks]) if chunks else np.zeros((0,), np.int64)
        _check_count("cifar10", split, len(labels), source)
        out.append(ImageRecords(images, labels))
    logging.info("CIFAR-10 from %s: %d train / %d test images", source, len(out[0]), len(out[1]))
    return out[0], out[1]


def imdb_splits(data_dir: str | Path | None, *, raw: bool = False
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """``(train, test)`` reviews ``{"text": str, "label": 0 neg | 1 pos}``, or None if absent.

    Args:
      data_dir: ``data.data_dir`` (see :func:`search_dirs`).
      raw: give ``"text"`` as the file's bytes, undecoded (byte-level readers need the bytes
        exactly; decoding replaces invalid UTF-8).

    Raises:
      DataNotFoundError: an unreadable archive, or one without labelled reviews.
    """
    source = _find(IMDB_ARCHIVE, IMDB_FOLDER, data_dir)
    if source is None:
        return None
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {"train": [], "test": []}
    for m, data in _members(source, _IMDB_FILE):
        split, polarity, name = m.groups()
        found[split].append((f"{polarity}/{name}", {
            "text": data if raw else data.decode("utf-8", errors="replace"),
            "label": int(polarity == "pos")}))
    if not found["train"] and not found["test"]:
        raise _bad(f"{source} holds no aclImdb/{{train,test}}/{{pos,neg}}/*.txt reviews: not the "
                   f"IMDB release ({IMDB_URL})")
    out = []
    for split in ("train", "test"):
        ordered = [r for _, r in sorted(found[split], key=lambda kv: kv[0])]
        # Sorted paths put every negative review first; a fixed permutation mixes the classes.
        ordered = [ordered[i] for i in np.random.default_rng(0).permutation(len(ordered))]
        _check_count("imdb", split, len(ordered), source)
        out.append(ordered)
    logging.info("IMDB from %s: %d train / %d test reviews", source, len(out[0]), len(out[1]))
    return out[0], out[1]


def release_or_tfds(name: str, tfds_name: str, data_dir: str | Path | None
                    ) -> tuple[Any, Any]:
    """``(train, test)`` from the release archive if present, else from TFDS.

    Args:
      name: ``"cifar10"`` or ``"imdb"``. tfds_name: the TFDS dataset name.
      data_dir: ``data.data_dir``.

    Raises:
      DataNotFoundError: neither source is there (the message gives both routes), or the
        archive is unreadable.
    """
    splits = (cifar10_splits if name == "cifar10" else imdb_splits)(data_dir)
    if splits is not None:
        return splits
    try:
        return tfds_source(tfds_name, "train", data_dir), tfds_source(tfds_name, "test", data_dir)
    except DataNotFoundError as e:
        raise DataNotFoundError(f"{missing_help(name, data_dir)}\nOr from TFDS: {e}") from None
