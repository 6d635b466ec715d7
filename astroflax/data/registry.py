"""The dataset registry: ``config.data.name`` -> the function that loads it.

Each loader takes the ``config.data`` mapping and returns a :class:`~astroflax.data.base.Dataset`;
a new dataset is one module with its loader plus one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from astroflax.data.base import Dataset
from astroflax.data.code import load_code
from astroflax.data.images import load_cifar10, load_digits
from astroflax.data.imdb import load_imdb
from astroflax.data.listops import load_listops
from astroflax.data.lra import (
    load_lra_image,
    load_lra_pathfinder,
    load_lra_retrieval,
    load_lra_text,
)
from astroflax.data.mqar import load_mqar
from astroflax.data.wikitext import load_wikitext2

DATASETS: dict[str, Callable[[Mapping[str, Any]], Dataset]] = {
    "digits": load_digits, "cifar10": load_cifar10, "imdb": load_imdb,
    "wikitext2": load_wikitext2, "code": load_code, "mqar": load_mqar,
    "listops": load_listops,
    "lra_text": load_lra_text, "lra_retrieval": load_lra_retrieval, "lra_image": load_lra_image,
    "lra_pathfinder": load_lra_pathfinder}


def load_dataset(cfg: Mapping[str, Any]) -> Dataset:
    """The dataset named ``cfg["name"]`` (one of :data:`DATASETS`) with ``cfg``'s options.

    Args:
      cfg: ``name`` plus options: ``data_dir``, ``num_train`` / ``num_eval`` (caps, for smoke
        runs), ``max_len``, ``vocab_size``, ``tokenizer``, ``glove_path``, ``augment``,
        ``eval_split`` (see the dataset functions). Splits are fixed: randomness (shuffling,
        augmentation) belongs to :func:`astroflax.data.pipeline.train_batches`.

    Raises:
      ValueError: unknown name. DataNotFoundError: the files are not prepared.
      DataConfigError: an option the data cannot satisfy.
    """
    name = cfg["name"]
    if name not in DATASETS:
        raise ValueError(f"data.name: unknown dataset {name!r}; allowed: {sorted(DATASETS)}")
    return DATASETS[name](cfg)
