"""Where the Long Range Arena release lies on disk, and what every LRA loader shares.

LRA's data (Tay et al., "Long Range Arena", ICLR 2021; code: google-research/long-range-arena)
comes as one archive, ``lra_release.gz`` (about 7 GB, :data:`LRA_URL`), which extracts to
``lra_release/lra_release/`` holding, among others, ``tsv_data/`` (the Retrieval pairs) and
``pathfinder32/`` (Pathfinder). Text and Image read the original IMDB and CIFAR-10 releases
instead, as LRA reads them from TFDS.

The loaders read the *extracted* files (a 7 GB gzip stream offers no random access). Each file is
looked for in every folder of :func:`astroflax.data.archives.search_dirs` (``data.data_dir`` and
its ``downloads/manual/``, or TFDS's manual-download folder), and in their ``lra_release/`` and
``lra_release/lra_release/`` subfolders, so pointing ``data.data_dir`` at the folder the archive
was extracted in is enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astroflax.data import archives
from astroflax.data import text as text_lib
from astroflax.data.base import DataConfigError, DataNotFoundError

LRA_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
LRA_README = "https://github.com/google-research/long-range-arena (README, 'Dataset Setup')"
#: Byte-level ids of TFDS's ``ByteTextEncoder`` (LRA's ``tokenizer='char'``): byte ``b`` is id
#: ``b + 1`` so that id 0 can pad; 256 bytes + padding = 257 ids.
BYTE_PAD, BYTE_VOCAB = 0, 257
#: Grey levels 0-255 are the pixel tokens of Image and Pathfinder (LRA's ``vocab_size = 256``).
PIXEL_VOCAB = 256
#: Byte-level length of Text and Retrieval in the LRA paper (4K bytes per document).
TEXT_LEN = 4000
#: Sequence length of Image and Pathfinder-32: the 32 × 32 pixels, rows first.
IMAGE_LEN = 32 * 32


def release_roots(data_dir: str | Path | None) -> list[Path]:
    """Folders searched for extracted LRA release files, in order (see the module docstring)."""
    return [r for d in archives.search_dirs(data_dir)
            for r in (d, d / "lra_release", d / "lra_release" / "lra_release")]


def find_in_release(data_dir: str | Path | None, relatives: Sequence[str]) -> Path | None:
    """The first existing ``root / rel`` over :func:`release_roots` × ``relatives``, or None."""
    for root in release_roots(data_dir):
        for rel in relatives:
            if (root / rel).exists():
                return root / rel
    return None


def release_missing(what: str, rel: str, data_dir: str | Path | None) -> DataNotFoundError:
    """The error for a missing release file: what it is, where it comes from, where it goes.

    Args:
      what: the task (e.g. ``"LRA Retrieval"``). rel: the file's path inside ``lra_release/``.
      data_dir: ``data.data_dir``.
    """
    dirs = archives.search_dirs(data_dir)
    msg = (f"{what}: {rel} not found. It is part of the LRA release ({LRA_URL}, about 7 GB; see "
           f"{LRA_README}). Download it, extract it (tar xzf lra_release.gz) and put the "
           f"extracted lra_release/ folder, or {rel} itself, in one of: "
           f"{', '.join(str(d) for d in dirs)} (or set --config.data.data_dir=DIR).")
    packed = [d / n for d in dirs for n in ("lra_release.gz", "lra_release.tar.gz")
              if (d / n).is_file()]
    if packed:
        msg += f" {packed[0]} is there but still packed: extract it first."
    return DataNotFoundError(msg)


def corrupt(where: str, problem: str) -> DataNotFoundError:
    """The error for a release file that is there but unreadable (truncated or not LRA's)."""
    return DataNotFoundError(f"{where}: {problem}; extract the LRA release again ({LRA_URL})")


def byte_tokens(data: bytes, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``length`` bytes of ``data`` as byte-level ids, padded with :data:`BYTE_PAD`.

    Returns:
      ``(tokens int32 [length], mask bool [length])``; token ``i`` is ``data[i] + 1``.
    """
    ids = np.frombuffer(data[:length], np.uint8).astype(np.int32) + 1
    return text_lib.pad_or_truncate(ids, length, pad_id=BYTE_PAD)


def as_bytes(text: str | bytes) -> bytes:
    """``text`` as bytes (TFDS gives bytes from prepared data, str from its mock data)."""
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def text_length(cfg: Mapping[str, Any]) -> int:
    """``data.max_len`` (default :data:`TEXT_LEN`) for the byte-level tasks.

    Raises:
      DataConfigError: not a positive int.
    """
    length = cfg.get("max_len") or TEXT_LEN
    if not isinstance(length, int | np.integer) or length < 1:
        raise DataConfigError(f"data.max_len: expected a positive int (bytes per document), "
                              f"got {length!r}")
    return int(length)


def check_image_length(cfg: Mapping[str, Any], name: str) -> None:
    """Image tasks have no length option: ``data.max_len`` must be unset or :data:`IMAGE_LEN`.

    Raises:
      DataConfigError: any other value.
    """
    if cfg.get("max_len") not in (None, IMAGE_LEN):
        raise DataConfigError(f"data.max_len: {name} sequences are the {IMAGE_LEN} pixels of a "
                              f"32×32 image; leave it unset, got {cfg.get('max_len')!r}")


def eval_split(cfg: Mapping[str, Any], name: str, allowed: Sequence[str]) -> str:
    """``data.eval_split`` (default ``"test"``), checked against the task's splits.

    Raises:
      DataConfigError: a split the task does not have.
    """
    split = cfg.get("eval_split") or "test"
    if split not in allowed:
        raise DataConfigError(f"data.eval_split: {name} evaluates on one of {list(allowed)}, got "
                              f"{split!r}")
    return split


def shuffled(n: int) -> np.ndarray:
    """A fixed permutation of ``range(n)`` (seed 0, whatever the run's seed).

    So that a cap such as ``data.num_eval=64`` takes rows from the whole file, not its first
    (possibly sorted) rows, and every run sees the same ones.
    """
    return np.random.default_rng(0).permutation(n)
