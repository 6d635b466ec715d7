"""A real text corpus every machine has: the Python standard library's own source, for LM.

The corpus is every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]`` (about 12 MB for
CPython 3.11) outside directories named ``test``, ``tests``, ``idle_test``, ``site-packages``,
``dist-packages`` and ``__pycache__`` (third-party packages and the test suites are not the
standard library's source). It is split by module, a module being one file named by its
dotted path (``email.parser``, ``os``, ``json`` for ``json/__init__.py``): a module goes to
``test`` when the SHA-256 of its name is 0 mod 20, to ``validation`` when 1 mod 20, else to
``train`` (deterministic, independent of the machine's file order; about 0.6-0.7 MB of source
each for validation and test on CPython 3.11). Per file rather than per package, so the large
packages (``encodings`` with its generated tables, ``idlelib``) do not land whole in one
split. Files are read in sorted path order.

Tokenisation (word level, as the WikiText benchmarks): each line is cut into identifiers /
keywords (``[A-Za-z_][A-Za-z0-9_]*``), numbers (``[0-9]+``) and single other non-space
characters; a non-empty line ends with ``<eos>``; indentation and other whitespace are dropped.
The vocabulary is ``<eos>``, ``<unk>`` and the most frequent training tokens (ties by token),
``vocab_size`` in all (default 8192); other tokens become ``<unk>``. The token streams are then
cut into windows exactly as WikiText-2's (:func:`astroflax.data.wikitext.pack_windows`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grain
import numpy as np

from astroflax.data.base import DataConfigError, DataNotFoundError, Dataset
from astroflax.data.text import EOS, UNK, build_vocab
from astroflax.data.wikitext import pack_windows

EXCLUDED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages",
                           "__pycache__"})
SPLITS = ("train", "validation", "test")
DEFAULT_VOCAB = 8192
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|\S")


def stdlib_root() -> Path:
    """The running interpreter's standard-library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def module_split(module: str) -> str:
    """``"train" | "validation" | "test"`` of a dotted module name (see the module docstring)."""
    bucket = int(hashlib.sha256(module.encode()).hexdigest(), 16) % 20
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def module_name(parts: tuple[str, ...]) -> str:
    """``("email", "parser.py")`` -> ``"email.parser"``; a package's ``__init__.py`` -> its name."""
    return ".".join(parts).removesuffix(".py").removesuffix(".__init__")


def corpus_files(root: str | Path) -> dict[str, list[Path]]:
    """The corpus's files per split, each list in sorted path order.

    Raises:
      FileNotFoundError: ``root`` holds no ``*.py`` file outside the excluded directories.
    """
    root = Path(root)
    files: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for p in sorted(root.rglob("*.py")):
        parts = p.relative_to(root).parts
        if EXCLUDED_DIRS & set(parts[:-1]):
            continue
        files[module_split(module_name(parts))].append(p)
    if not any(files.values()):
        raise FileNotFoundError(f"no *.py files under {root}: set config.data.data_dir to a "
                                "Python standard-library directory (sysconfig's 'stdlib')")
    return files


def tokenize_code(text: str) -> list[str]:
    """Tokens of ``text``: per non-empty line its identifiers, numbers and symbols, ``<eos>``."""
    out: list[str] = []
    for line in text.splitlines():
        tokens = _TOKEN.findall(line)
        if tokens:
            out.extend(tokens)
            out.append(EOS)
    return out


@functools.lru_cache(maxsize=4)
def encoded_corpus(root: str, vocab_size: int) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """``({split: int32 ids [N]}, vocabulary)``; cached, so a study reads the files once."""
    files = corpus_files(root)
    tokens = {s: [t for p in files[s]
                  for t in tokenize_code(p.read_text(encoding="utf-8", errors="replace"))]
              for s in SPLITS}
    vocab = build_vocab([tokens["train"]], max_size=vocab_size, specials=(EOS, UNK))
    return {s: vocab.encode(tokens[s]) for s in SPLITS}, vocab.words


def spaced(windows: np.ndarray, limit: int | None) -> np.ndarray:
    """At most ``limit`` of ``windows [n, L]``, evenly spaced (so every part is represented)."""
    if limit is None or limit >= len(windows):
        return windows
    return windows[np.linspace(0, len(windows) - 1, int(limit)).round().astype(int)]


def load_code(cfg: Mapping[str, Any]) -> Dataset:
    """The ``code`` dataset: windows of ``max_len`` tokens of the standard library's source.

    Args:
      cfg: ``data_dir`` (default: :func:`stdlib_root`), ``max_len`` (required),
        ``vocab_size`` (default 8192), ``tokenizer`` (``"word"``: the scheme of the module
        docstring, the only one), ``eval_split`` (``"validation"`` | ``"test"``),
        ``num_train`` (first windows) / ``num_eval`` (evenly spaced windows) caps.

    Returns:
      An ``astroflax.data.Dataset`` with task ``"lm"``.

    Raises:
      DataNotFoundError: no Python source under ``data_dir``. DataConfigError: a bad option.
    """
    if cfg.get("tokenizer") not in (None, "word"):
        raise DataConfigError(f"data.tokenizer: the code corpus is word level ('word'), got "
                         f"{cfg.get('tokenizer')!r}")
    eval_split = cfg.get("eval_split") or "validation"
    if eval_split not in ("validation", "test"):
        raise DataConfigError(f"data.eval_split: expected 'validation' or 'test', got "
                              f"{eval_split!r}")
    if not cfg.get("max_len"):
        raise DataConfigError("data.max_len: the window length is required for the code corpus")
    root = str(Path(cfg.get("data_dir") or stdlib_root()).expanduser())
    try:
        ids, words = encoded_corpus(root, int(cfg.get("vocab_size") or DEFAULT_VOCAB))
    except FileNotFoundError as e:
        raise DataNotFoundError(str(e)) from None
    length = int(cfg["max_len"])
    train_w = pack_windows(ids["train"], length)
    if cfg.get("num_train") is not None:
        train_w = train_w[:int(cfg["num_train"])]
    eval_w = spaced(pack_windows(ids[eval_split], length), cfg.get("num_eval"))

    def split(w: np.ndarray) -> dict[str, np.ndarray]:
        return {"inputs": w[:-1], "targets": w[1:]}

    return Dataset("code", "lm", grain.MapDataset.source(train_w).map(split),
                   grain.MapDataset.source(eval_w).map(split),
                   {"vocab_size": len(words), "max_len": length},
                   {"eval_split": eval_split, "tokenizer": "word (code tokens, training split)",
                    "train_tokens": int(ids["train"].size), "root": root})
