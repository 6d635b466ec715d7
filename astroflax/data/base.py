"""What every dataset of :mod:`astroflax.data` is and raises: :class:`Dataset` and its errors.

Examples are dicts of numpy arrays with explicit dtypes (the test suite runs with strict dtype
promotion and x64 on):

* images: ``{"inputs": float32 [H, W, C], "label": int32 []}``
* sequence classification: ``{"inputs": int32 [L], "mask": bool [L], "label": int32 []}``
* language modelling: ``{"inputs": int32 [L], "targets": int32 [L]}``
* labels at a subset of positions (associative recall): ``{"inputs": int32 [L],
  "targets": int32 [L]}`` with :data:`IGNORE` wherever no label is given.

``Dataset.task`` names which of these a dataset holds; the trainer's task objects
(:mod:`astroflax.train.tasks`) say what is computed from it. This module imports nothing of
astroflax, so every dataset module (and the registry above them) can import it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grain
import numpy as np

Example = dict[str, np.ndarray]

#: Target value of a position that carries no label (ignored by loss and metrics), as in
#: PyTorch's ``ignore_index`` default.
IGNORE = -100

TFDS_PREPARE_HELP = (
    "TFDS dataset {name!r} (split {split!r}) is not prepared in {data_dir}.\n"
    "Prepare it once on a machine with internet (TensorFlow is needed only for this step):\n"
    "    pip install 'astroflax[prepare]'   # or: pip install tensorflow tensorflow-datasets\n"
    "    tfds build {name} --file_format=array_record --data_dir={data_dir}\n"
    "then copy that folder here (or set --config.data.data_dir=DIR, or TFDS_DATA_DIR). "
    "Training itself reads the array_record files without TensorFlow.\n(cause: {cause})")


class DataNotFoundError(FileNotFoundError):
    """The dataset is not on disk; the message says how to prepare it and where to put it."""


class DataConfigError(ValueError):
    """A ``config.data`` option the data cannot satisfy; the message starts with the field.

    The trainer reports it as a config error (``config.data.max_len: ...``).
    """


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A task's splits (whole, lazily read) and what the data fixes about the model.

    Attributes:
      name: dataset name (``digits``, ``cifar10``, ``imdb``, ``wikitext2``, ``code``, ...).
      task: the kind of example (see the module docstring), a key of
        :data:`astroflax.train.tasks.TASKS`; the trainer checks it when a run is set up.
      train, eval: the splits' examples (see the module docstring); ``num_train`` and
        ``num_eval`` are their lengths.
      model_overrides: keyword arguments the data fixes (``image_size``, ``vocab_size``, ...).
      info: facts for the report (e.g. ``tokenizer``, ``eval_split``).
      pretrained: a table the trainer copies into the model after it is built, or None:
        ``{"embedding": float32 [V, E]}`` (e.g. GloVe vectors for the vocabulary).
    """

    name: str
    task: str
    train: grain.MapDataset
    eval: grain.MapDataset
    model_overrides: dict[str, Any]
    info: dict[str, Any]
    pretrained: dict[str, np.ndarray] | None = None

    @property
    def num_train(self) -> int:
        """Examples in the training split."""
        return len(self.train)

    @property
    def num_eval(self) -> int:
        """Examples in the eval split."""
        return len(self.eval)


def limit(n: int, cap: int | None) -> int:
    """``n`` capped at ``cap`` (None: no cap) — the ``data.num_train`` / ``num_eval`` options."""
    return n if cap is None else min(n, int(cap))


def tfds_source(name: str, split: str, data_dir: str | None) -> Any:
    """``tfds.data_source(name, split)`` without downloading; DataNotFoundError when absent."""
    # Imported here: tensorflow_datasets takes seconds to import and most runs never need it.
    import tensorflow_datasets as tfds

    shown = data_dir or "~/tensorflow_datasets (or $TFDS_DATA_DIR)"
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
        raise DataNotFoundError(TFDS_PREPARE_HELP.format(
            name=name, split=split, data_dir=shown, cause=f"{type(e).__name__}: {e}"[:300])
        ) from None
