import zipfile

import numpy as np
import pytest

from astroflax.data import build_vocab, load_dataset, read_wikitext_split, tokenize_words
from astroflax.data.text import EOS, PAD, UNK, pad_or_truncate
from astroflax.data.wikitext import pack_windows, tokenize_wikitext

# WikiText's raw format: a leading blank line, " = Title = " headings, paragraphs, blank lines.
TRAIN = [" \n", " = Valkyria = \n", " \n", " the cat sat on the mat . \n", " \n",
         " = = History = = \n", " the dog sat . \n"]
TEST = [" \n", " = Other = \n", " a cat and a bird . \n"]


def write_release(root, as_zip):
    files = {"wiki.train.raw": TRAIN, "wiki.valid.raw": TEST, "wiki.test.raw": TEST}
    if as_zip:
        with zipfile.ZipFile(root / "wikitext-2-raw-v1.zip", "w") as z:
            for name, lines in files.items():
                z.writestr(f"wikitext-2-raw/{name}", "".join(lines))
    else:
        (root / "wikitext-2-raw").mkdir()
        for name, lines in files.items():
            (root / "wikitext-2-raw" / name).write_text("".join(lines))


def test_tokenize_words_lowercases_strips_html_breaks_and_keeps_contractions():
    assert tokenize_words(b"Great film!<br /><br />I didn't LIKE it.") == [
        "great", "film", "!", "i", "didn't", "like", "it", "."]


def test_build_vocab_orders_by_count_then_word_after_specials():
    v = build_vocab([["b", "a", "c", "a"], ["c", "d"]], max_size=5)
    assert v.words == (PAD, UNK, "a", "c", "b")   # a:2, c:2 (tie -> alphabetical), b:1 < d:1
    np.testing.assert_array_equal(v.encode(["c", "zzz", "a"]), [3, 1, 2])
    assert v.encode(["a"]).dtype == np.int32


def test_pad_or_truncate_masks_exactly_the_real_tokens():
    tokens, mask = pad_or_truncate(np.array([5, 6, 7], np.int32), 5)
    np.testing.assert_array_equal(tokens, [5, 6, 7, 0, 0])
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0])
    tokens, mask = pad_or_truncate(np.arange(1, 9, dtype=np.int32), 4)
    np.testing.assert_array_equal(tokens, [1, 2, 3, 4])
    assert mask.all()


@pytest.mark.parametrize("as_zip", [False, True])
def test_read_wikitext_split_preserves_line_order_from_folder_or_zip(tmp_path, as_zip):
    write_release(tmp_path, as_zip)
    assert read_wikitext_split(tmp_path, "train") == TRAIN
    assert read_wikitext_split(tmp_path, "test") == TEST


def test_missing_wikitext_says_where_to_put_the_release(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"wikitext-2-raw-v1\.zip"):
        read_wikitext_split(tmp_path, "train")


def test_word_level_wikitext_uses_train_vocabulary_eos_per_line_and_unk():
    ids, V, used = tokenize_wikitext({"train": TRAIN, "test": TEST}, "word")
    assert used == "word"
    vocab_train = [w for line in TRAIN for w in ([*line.split(), EOS] if line.split() else [])]
    assert len(ids["train"]) == len(vocab_train)
    # Decoding with the vocabulary rebuilt independently gives the text back.
    from collections import Counter
    counts = Counter(vocab_train)
    counts.pop(EOS)
    order = [EOS, UNK, *sorted(counts, key=lambda w: (-counts[w], w))]
    assert len(order) == V
    assert [order[i] for i in ids["train"]] == vocab_train
    test_words = [w for line in TEST for w in ([*line.split(), EOS] if line.split() else [])]
    expected = [w if w in counts or w == EOS else UNK for w in test_words]
    assert [order[i] for i in ids["test"]] == expected


def test_pack_windows_are_contiguous_shifted_pairs():
    ids = np.arange(23, dtype=np.int32)
    w = pack_windows(ids, 5)
    assert w.shape == (4, 6) and w.dtype == np.int32
    inputs, targets = w[:, :-1], w[:, 1:]
    np.testing.assert_array_equal(inputs.ravel(), ids[:20])      # every position once, in order
    np.testing.assert_array_equal(targets.ravel(), ids[1:21])


def test_wikitext_dataset_from_generated_files(tmp_path):
    write_release(tmp_path, as_zip=False)
    ds = load_dataset({"name": "wikitext2", "data_dir": str(tmp_path), "max_len": 4,
                       "tokenizer": "word", "eval_split": "test"})
    assert ds.task == "lm" and ds.info["tokenizer"] == "word"
    ex = ds.train[0]
    assert ex["inputs"].shape == (4,) and ex["inputs"].dtype == np.int32
    np.testing.assert_array_equal(ex["inputs"][1:], ex["targets"][:-1])
    # <eos>, <unk> and the 10 distinct training words (= valkyria the cat sat on mat . history
    # dog); the test split's new words are not in the vocabulary.
    assert ds.model_overrides == {"vocab_size": 12, "max_len": 4}


def test_a_wikitext_file_that_is_not_the_official_release_is_reported(tmp_path, caplog):
    import logging

    (tmp_path / "wiki.valid.raw").write_text(" = A = \n\n text .\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        lines = read_wikitext_split(tmp_path, "validation")
    assert lines == [" = A = \n", "\n", " text .\n"]
    assert "has 3 lines; the official raw release has 3760" in caplog.text
