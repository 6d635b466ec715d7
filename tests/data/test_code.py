"""The standard-library code corpus: file selection, split by module, tokens, windows."""

import hashlib

import numpy as np
import pytest

from astroflax.data import DataNotFoundError, load_dataset
from astroflax.data.code import (
    corpus_files,
    encoded_corpus,
    module_name,
    module_split,
    spaced,
    tokenize_code,
)
from astroflax.data.wikitext import pack_windows


def _tree(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_tokenize_code_by_hand():
    assert tokenize_code("def f(x_1):\n\n    return x_1 + 42  # ok\n") == [
        "def", "f", "(", "x_1", ")", ":", "<eos>",
        "return", "x_1", "+", "42", "#", "ok", "<eos>"]


def test_module_split_is_the_sha256_rule():
    for name in ("os", "email.parser", "json", "asyncio.tasks"):
        bucket = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 20
        assert module_split(name) == {0: "test", 1: "validation"}.get(bucket, "train")
    assert module_name(("email", "parser.py")) == "email.parser"
    assert module_name(("json", "__init__.py")) == "json"


def test_corpus_files_skip_test_dirs_and_third_party(tmp_path):
    _tree(tmp_path, {"a.py": "x", "pkg/b.py": "y", "pkg/tests/c.py": "z", "test/d.py": "w",
                     "site-packages/e.py": "v", "pkg/notes.txt": "u"})
    files = corpus_files(tmp_path)
    found = sorted(str(p.relative_to(tmp_path)) for s in files.values() for p in s)
    assert found == ["a.py", "pkg/b.py"]
    assert tmp_path / "pkg/b.py" in files[module_split("pkg.b")]
    with pytest.raises(FileNotFoundError, match=r"no \*\.py files"):
        corpus_files(tmp_path / "pkg" / "tests" / "nothing")


def test_load_code_windows_are_the_hand_encoded_stream(tmp_path):
    # Find module names landing in each split, so the tiny corpus has all three.
    names = {}
    for i in range(400):
        names.setdefault(module_split(f"m{i}"), f"m{i}")
    _tree(tmp_path, {f"{names['train']}.py": "a = b\nb = a\n" * 6,
                     f"{names['validation']}.py": "a = c\n" * 4,
                     f"{names['test']}.py": "b = a\n" * 4})
    cfg = {"name": "code", "data_dir": str(tmp_path), "max_len": 4, "vocab_size": 5,
           "tokenizer": "word", "eval_split": "validation"}
    ds = load_dataset(cfg)
    # Train tokens: (a = b <eos> b = a <eos>) × 6 -> counts a 12, b 12, = 12, <eos> 12.
    # Vocabulary: <eos>, <unk>, then by (-count, token): "=", "a", "b" (5 in all).
    ids = {"<eos>": 0, "<unk>": 1, "=": 2, "a": 3, "b": 4}
    line = ["a", "=", "b", "<eos>", "b", "=", "a", "<eos>"]
    train = np.array([ids[t] for t in line] * 6, np.int32)
    assert ds.model_overrides == {"vocab_size": 5, "max_len": 4}
    assert ds.num_train == len(pack_windows(train, 4))
    ex = ds.train[1]
    assert ex["inputs"].tolist() == train[4:8].tolist()
    assert ex["targets"].tolist() == train[5:9].tolist()
    val = ds.eval[0]   # "c" is not in the training vocabulary -> <unk>
    assert val["inputs"].tolist() == [3, 2, 1, 0]
    encoded_corpus.cache_clear()


def test_load_code_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"no \*\.py files"):
        load_dataset({"name": "code", "data_dir": str(tmp_path), "max_len": 8})
    with pytest.raises(ValueError, match="tokenizer"):
        load_dataset({"name": "code", "max_len": 8, "tokenizer": "gpt2"})
    with pytest.raises(ValueError, match="eval_split"):
        load_dataset({"name": "code", "max_len": 8, "eval_split": "train"})


def test_spaced_takes_evenly_spaced_windows():
    w = np.arange(10)[:, None]
    assert spaced(w, 4)[:, 0].tolist() == [0, 3, 6, 9]
    assert spaced(w, None) is w and spaced(w, 20) is w
