"""Input pipelines: scikit-learn digits (offline), CIFAR-10 and IMDB (TFDS), WikiText-2 (raw).

Every dataset comes back as a :class:`Dataset`: grain ``MapDataset`` s of single examples
(numpy, float32 inputs / int32 labels), read lazily, plus the model settings the data fixes
(image size, vocabulary). :func:`train_batches` / :func:`train_iterator` and
:func:`eval_batches` turn them into deterministic, checkpointable streams of global batches,
of which each JAX process reads only its own rows.
"""

from astroflax.data.base import IGNORE, DataConfigError, DataNotFoundError, Dataset
from astroflax.data.pipeline import describe, eval_batches, train_batches, train_iterator
from astroflax.data.registry import DATASETS, load_dataset
from astroflax.data.text import WordVocab, build_vocab, tokenize_words
from astroflax.data.wikitext import read_wikitext_split

__all__ = [
    "DATASETS",
    "IGNORE",
    "DataConfigError",
    "DataNotFoundError",
    "Dataset",
    "WordVocab",
    "build_vocab",
    "describe",
    "eval_batches",
    "load_dataset",
    "read_wikitext_split",
    "tokenize_words",
    "train_batches",
    "train_iterator",
]
