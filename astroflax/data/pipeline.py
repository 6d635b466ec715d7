"""The batch streams the trainer consumes, from a :class:`~astroflax.data.base.Dataset`.

Examples are as :mod:`astroflax.data.base` describes them. Splits are lazy: an example is read
when indexed. Batches are defined globally — one seeded
permutation per epoch of the whole split, cut into global batches — and each JAX process reads
only its rows of each global batch (``rows=(start, stop)``, from the batch sharding; see
:func:`astroflax.train.mesh.process_rows`). So a run sees the same global batches on one
process or on many, and the trainer assembles them into global arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import grain
import numpy as np

from astroflax.data.base import Dataset, Example


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

