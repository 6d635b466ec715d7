"""LRA Pathfinder-32 from the release's PNG images and metadata files, without TensorFlow.

The release's ``pathfinder32/curv_contour_length_14/`` (LRA's ``hard`` difficulty, the one its
results use) holds ``metadata/<k>.npy`` files (plain text despite the suffix) and the images
under ``imgs/``. Each metadata line describes one image by space-separated fields: field 0 a
folder and field 1 a file name (the image is ``curv_contour_length_14/<field 0>/<field 1>``),
field 3 the label (1: the two markers lie on one path); LRA's TFDS builder
(``lra_benchmarks/data/pathfinder.py``) reads only these three.

Split: LRA slices its ``hard`` split ``[:80%]`` / ``[80%:90%]`` / ``[90%:]`` (train /
validation / test; its config counts 160 000 training and 20 000 validation images) and then
drops the examples whose image file is empty. TFDS's hashed record order is not available
without TFDS, so the slices here are of the metadata order (files by number, lines in order);
the generator draws every image independently, so any fixed order gives a fair split.

Examples ``{"inputs": int32 [1024], "mask": bool [1024], "label": int32 []}``: the PNG's grey
levels 0-255, rows first (LRA decodes the PNG and casts it to int32, no normalisation for its
Transformers). Images are decoded when read.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grain
import numpy as np
from absl import logging
from PIL import Image

from astroflax.data.base import Dataset, Example
from astroflax.data.lra_files import (
    IMAGE_LEN,
    PIXEL_VOCAB,
    check_image_length,
    corrupt,
    eval_split,
    find_in_release,
    release_missing,
)

#: The difficulty LRA reports (its ``pathfinder32_hard``), inside the release.
PATHFINDER_DIR = "pathfinder32/curv_contour_length_14"
#: Images of that folder implied by LRA's config (160 000 train = 80 %); another count is
#: logged as a warning.
PATHFINDER_IMAGES = 200_000
#: LRA's split points of the ordered examples: [:80%], [80%:90%], [90%:] (in tenths).
SPLIT_TENTHS = {"train": (0, 8), "validation": (8, 9), "test": (9, 10)}


def pathfinder_root(data_dir: str | Path | None) -> Path:
    """The ``curv_contour_length_14`` folder (with ``metadata/``); DataNotFoundError if absent."""
    # data_dir may also be pathfinder32/ or the curv_contour_length_14/ folder itself.
    metadata = find_in_release(data_dir, [f"{PATHFINDER_DIR}/metadata",
                                          "curv_contour_length_14/metadata", "metadata"])
    if metadata is None or not metadata.is_dir():
        raise release_missing("LRA Pathfinder-32", f"{PATHFINDER_DIR}/metadata/", data_dir)
    return metadata.parent


def _number_first(path: Path) -> tuple[int, int | str]:
    # 0.npy, 1.npy, ..., 10.npy by number (a name sort would put 10 before 2).
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.stem)


def read_metadata(root: Path) -> list[tuple[str, int]]:
    """``(image path relative to root, label)`` of every metadata line, in metadata order.

    Raises:
      DataNotFoundError: no metadata file, or a line without the fields or with a label that
        is not 0 or 1 (naming the file and line).
    """
    files = sorted((root / "metadata").glob("*.npy"), key=_number_first)
    if not files:
        raise corrupt(str(root / "metadata"), "no *.npy metadata file")
    examples = []
    for path in files:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 4 or fields[3] not in ("0", "1"):
                raise corrupt(f"{path}, line {number}", f"expected 'folder file _ label(0|1) ...',"
                              f" got {line[:80]!r} (a truncated file, or not LRA's metadata)")
            examples.append((f"{fields[0]}/{fields[1]}", int(fields[3])))
    return examples


def _nonempty(root: Path, examples: list[tuple[str, int]], cap: int | None
              ) -> tuple[list[tuple[str, int]], int]:
    """The examples whose image file is not empty (LRA's filter), at most ``cap``; and skips.

    Raises:
      DataNotFoundError: an image file listed in the metadata is missing.
    """
    kept, skipped = [], 0
    for rel, label in examples:
        if cap is not None and len(kept) >= cap:
            break
        try:
            size = (root / rel).stat().st_size
        except FileNotFoundError:
            raise corrupt(str(root / rel), "listed in metadata/ but missing") from None
        if size == 0:
            skipped += 1
        else:
            kept.append((str(root / rel), label))
    return kept, skipped


def png_tokens(path: str | Path) -> np.ndarray:
    """The grey levels ``int32 [1024]`` of a 32×32 Pathfinder PNG, rows first.

    Raises:
      DataNotFoundError: an unreadable (e.g. truncated) PNG, or one of another size.
    """
    try:
        with Image.open(path) as img:
            img.load()
            # The release's PNGs are single-channel; anything else is reduced to grey (PIL's
            # luma) rather than refused, as LRA would fail on it.
            grey = np.asarray(img if img.mode == "L" else img.convert("L"), np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as e:
        raise corrupt(str(path), f"not a readable PNG ({type(e).__name__}: {str(e)[:120]})"
                      ) from None
    if grey.shape != (32, 32):
        raise corrupt(str(path), f"a {grey.shape[1]}×{grey.shape[0]} image, expected 32×32 "
                      "(not Pathfinder-32)")
    return grey.astype(np.int32).reshape(-1)


def load_lra_pathfinder(cfg: Mapping[str, Any]) -> Dataset:
    """LRA Pathfinder-32 (``curv_contour_length_14``) as 1 024 pixel tokens (module docstring).

    Args:
      cfg: ``data_dir``, ``eval_split`` (``"test"``: the last 10 % | ``"validation"``: the
        10 % before it), ``num_train`` / ``num_eval`` caps (the first images of each slice);
        ``max_len`` must be unset (or 1024).

    Returns:
      Examples ``{"inputs": int32 [1024] (0-255), "mask": bool [1024] (all True),
      "label": int32 []}``; the model gets ``vocab_size`` 256, ``max_len`` 1024,
      ``num_classes`` 2.

    Raises:
      DataNotFoundError: the folder, a metadata file or an image is missing or unreadable
        (images: when read). DataConfigError: a bad option.
    """
    check_image_length(cfg, "lra_pathfinder")
    split = eval_split(cfg, "lra_pathfinder", ("test", "validation"))
    root = pathfinder_root(cfg.get("data_dir"))
    examples = read_metadata(root)
    n = len(examples)
    if n != PATHFINDER_IMAGES:
        logging.warning("LRA Pathfinder-32 in %s lists %d images; LRA's config implies %d: "
                        "results are not comparable with the paper's.", root, n,
                        PATHFINDER_IMAGES)
    mask = np.ones((IMAGE_LEN,), bool)

    def decode(ex: tuple[str, int]) -> Example:
        return {"inputs": png_tokens(ex[0]), "mask": mask, "label": np.int32(ex[1])}

    def part(name: str, cap: int | None) -> tuple[grain.MapDataset, int]:
        lo, hi = SPLIT_TENTHS[name]
        kept, skipped = _nonempty(root, examples[n * lo // 10:n * hi // 10],
                                  None if cap is None else int(cap))
        return grain.MapDataset.source(kept).map(decode), skipped

    train, skip_train = part("train", cfg.get("num_train"))
    ev, skip_eval = part(split, cfg.get("num_eval"))
    logging.info("LRA Pathfinder-32 from %s: %d train / %d %s images (%d empty files skipped)",
                 root, len(train), len(ev), split, skip_train + skip_eval)
    return Dataset("lra_pathfinder", "classification", train, ev,
                   {"vocab_size": PIXEL_VOCAB, "max_len": IMAGE_LEN, "num_classes": 2},
                   {"eval_split": split, "source": str(root),
                    "split": "metadata order: [:80%] train, [80%:90%] validation, [90%:] test",
                    "empty_images_skipped": skip_train + skip_eval,
                    "tokenizer": "grey level 0-255 (the PNG's)"})
