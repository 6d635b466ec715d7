"""ListOps: LRA's generator semantics, S4 tokens, LRA's TSV layout, caching and the loader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from astroflax.data import DataConfigError
from astroflax.data import listops as lo

# Tiny but not trivial: depth and fan-out as LRA, lengths short enough to draw in milliseconds.
SMALL = lo.ListOpsParams(min_len=10, max_len=40, sizes=(60, 15, 15), seed=3)


def reference_value(tokens: list[str]) -> int:
    """Value of an S4 token string, parsed recursively (independent of the generator)."""
    def parse(i: int) -> tuple[int, int]:
        tok = tokens[i]
        if tok.isdigit():
            return int(tok), i + 1
        assert tok in ("[MIN", "[MAX", "[MED", "[SM"), tok
        args, i = [], i + 1
        while tokens[i] != "X":
            v, i = parse(i)
            args.append(v)
        assert len(args) >= 2
        value = {"[MIN": min(args), "[MAX": max(args), "[MED": int(np.median(args)),
                 "[SM": sum(args) % 10}[tok]
        return value, i + 1

    value, end = parse(0)
    assert end == len(tokens)
    return value


def lra_string(tokens: list[str]) -> str:
    """LRA's serialisation of an S4 token string, built as LRA does: nested pairs."""
    def tree(i: int):
        if tokens[i].isdigit():
            return int(tokens[i]), i + 1
        pair, i = tokens[i], i + 1
        first = True
        while tokens[i] != "X":
            arg, i = tree(i)
            pair = (pair, arg)
            first = False
        assert not first
        return (pair, "]"), i + 1

    def show(t) -> str:
        return str(t) if not isinstance(t, tuple) else f"( {show(t[0])} {show(t[1])} )"

    return show(tree(0)[0])


def depth(tokens: list[str]) -> int:
    """Tree depth (root 1) of an S4 token string."""
    d = best = 1
    for t in tokens:
        if t.startswith("["):
            d += 1
        elif t == "X":
            d -= 1
        best = max(best, d)
    return best


@pytest.fixture(scope="module")
def small_splits() -> dict[str, list[tuple[str, int]]]:
    return lo.generate_listops(SMALL)


def test_hand_checked_tree_serialises_as_lra() -> None:
    # [SM [MAX 2 9 ] 4 [MED 1 2 7 8 ] ] = (9 + 4 + int(4.5)) % 10 = 7, in LRA's pair form.
    source = ("( ( ( ( [SM ( ( ( [MAX 2 ) 9 ) ] ) ) 4 ) ( ( ( ( ( [MED 1 ) 2 ) 7 ) 8 ) ] ) )"
              " ] )")
    tokens = lo.tokenize(source)
    assert tokens == ["[SM", "[MAX", "2", "9", "X", "4", "[MED", "1", "2", "7", "8", "X", "X"]
    assert reference_value(tokens) == 7
    np.testing.assert_array_equal(lo.encode(source),
                                  [14, 12, 3, 10, 15, 5, 13, 2, 3, 8, 9, 15, 15])


def test_median_truncates_like_numpy() -> None:
    for args in ([1, 2], [3, 4, 8, 9], [0, 9], [5, 1, 7], [2, 2, 3, 9, 9, 0]):
        assert lo._evaluate(2, list(args)) == int(np.median(args))


def test_labels_match_an_independent_evaluator(small_splits) -> None:
    for rows in small_splits.values():
        for source, label in rows:
            assert reference_value(lo.tokenize(source)) == label


def test_lengths_depth_and_split_sizes(small_splits) -> None:
    assert [len(small_splits[s]) for s in lo.SPLITS] == list(SMALL.sizes)
    for rows in small_splits.values():
        for source, _ in rows:
            tokens = lo.tokenize(source)
            assert SMALL.min_len < len(tokens) < SMALL.max_len
            assert depth(tokens) <= SMALL.max_depth
            assert source == lra_string(tokens)


def test_no_repeated_source_within_or_across_splits(small_splits) -> None:
    # A length range with few distinct trees forces duplicate draws, which must be dropped.
    p = lo.ListOpsParams(min_len=3, max_len=5, sizes=(200, 50, 50), seed=0)
    dense = lo.generate_listops(p)
    for splits in (small_splits, dense):
        sources = [s for rows in splits.values() for s, _ in rows]
        assert len(set(sources)) == len(sources)


def test_distinct_tree_count_matches_enumeration() -> None:
    # Length 4 trees are one operator over two digits: 4 * 10 * 10; length 1 trees are digits.
    p = lo.ListOpsParams(min_len=0, max_len=6, max_depth=3, max_args=3, sizes=(1, 1, 1))
    counts = lo.length_distribution(p, count=True)
    np.testing.assert_array_equal(counts, [0, 10, 0, 0, 400, 4000])
    probs = lo.length_distribution(p, count=False)
    # P(leaf root) = 0.75; P(op over two leaves) = 0.25 * 1/2 * 0.75**2.
    np.testing.assert_allclose(probs[[1, 4]], [0.75, 0.25 * 0.5 * 0.75**2])


def test_generation_is_deterministic_and_seeded(tmp_path) -> None:
    def digest(folder: Path) -> list[str]:
        return [hashlib.sha256(lo.split_path(folder, s).read_bytes()).hexdigest()
                for s in lo.SPLITS]

    a, b, c = (lo.prepare_listops(p, tmp_path / name) for name, p in (
        ("a", SMALL), ("b", SMALL), ("c", lo.ListOpsParams(**{**vars(SMALL), "seed": 4}))))
    assert digest(a) == digest(b)
    assert all(x != y for x, y in zip(digest(a), digest(c), strict=True))


def test_tsv_layout_is_lra(tmp_path, small_splits) -> None:
    lo.prepare_listops(SMALL, tmp_path)
    raw = lo.split_path(tmp_path, "val").read_bytes().decode()
    lines = raw.split("\r\n")  # Python csv's line end, as LRA's csv.writer
    assert lines[0] == "Source\tTarget" and lines[-1] == ""
    source, label = lines[1].split("\t")
    assert (source, int(label)) == small_splits["val"][0]
    assert json.loads((tmp_path / "listops.json").read_text())["min_len"] == SMALL.min_len


def test_existing_files_are_read_not_regenerated(tmp_path, monkeypatch) -> None:
    lo.prepare_listops(SMALL, tmp_path)
    before = lo.split_path(tmp_path, "train").read_bytes()

    def fail(_):
        raise AssertionError("regenerated")

    monkeypatch.setattr(lo, "generate_listops", fail)
    lo.prepare_listops(SMALL, tmp_path)
    assert lo.split_path(tmp_path, "train").read_bytes() == before
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(DataConfigError, match=r"^data.data_dir: .* generated with"):
        lo.prepare_listops(lo.ListOpsParams(**{**vars(SMALL), "seed": 9}), tmp_path)
    lo.split_path(tmp_path, "test").unlink()
    with pytest.raises(DataConfigError, match=r"lacks \['basic_test.tsv'\]"):
        lo.prepare_listops(SMALL, tmp_path)


def cfg(tmp_path, **kw) -> dict:
    return {"listops_tier": "cpu", "listops_min_len": SMALL.min_len,
            "listops_max_len": SMALL.max_len, "listops_sizes": SMALL.sizes, "data_dir":
            str(tmp_path), "max_len": None, **kw}


def test_loader_round_trip(tmp_path, small_splits) -> None:
    lo.prepare_listops(lo.ListOpsParams(**{**vars(SMALL), "seed": 0}), tmp_path)
    ds = lo.load_listops(cfg(tmp_path, eval_split="validation", num_train=50))
    assert (ds.name, ds.task, ds.num_train, ds.num_eval) == ("listops", "classification", 50, 15)
    assert ds.model_overrides == {"vocab_size": 16, "num_classes": 10, "max_len": SMALL.max_len}
    rows = lo.read_tsv(lo.split_path(tmp_path, "val"))
    for i, (source, label) in enumerate(rows):
        ex = ds.eval[i]
        assert ex["inputs"].dtype == np.int32 and ex["inputs"].shape == (SMALL.max_len,)
        assert ex["mask"].dtype == np.bool_ and ex["label"].dtype == np.int32
        tokens = [lo.VOCAB[t] for t in ex["inputs"][ex["mask"]]]
        assert tokens == lo.tokenize(source) and int(ex["label"]) == label
        assert not ex["inputs"][~ex["mask"]].any() and ex["mask"][: len(tokens)].all()
    labels = np.array([y for _, y in rows])
    assert ds.info["majority_rate"] == np.bincount(labels).max() / len(labels)
    assert ds.info["majority_class"] == np.bincount(labels).argmax()


def test_generates_into_an_empty_data_dir(tmp_path) -> None:
    ds = lo.load_listops(cfg(tmp_path / "new", max_len=64))
    assert ds.num_train == SMALL.sizes[0] and ds.num_eval == SMALL.sizes[2]
    assert ds.train[0]["inputs"].shape == (64,)
    assert lo.split_path(tmp_path / "new", "train").exists()


def test_lra_released_format_reads_to_s4_tokens(tmp_path) -> None:
    # LRA's released files: LRA's pair serialisation, CR LF, no listops.json beside them.
    rows = [("( ( ( [MAX 2 ) 9 ) ] )", "9"),
            ("( ( ( ( [MIN ( ( ( [SM 5 ) 7 ) ] ) ) 3 ) 8 ) ] )", "2"),
            ("( ( ( ( [MED 1 ) 4 ) 6 ) ] )", "4")]
    text = "Source\tTarget\r\n" + "".join(f"{s}\t{y}\r\n" for s, y in rows)
    for split in lo.SPLITS:
        lo.split_path(tmp_path, split).write_text(text, newline="")
    ds = lo.load_listops({"listops_tier": "lra", "data_dir": str(tmp_path), "max_len": 12})
    expected = [[12, 3, 10, 15], [11, 14, 6, 8, 15, 4, 9, 15], [13, 2, 5, 7, 15]]
    for i, ids in enumerate(expected):
        ex = ds.train[i]
        np.testing.assert_array_equal(ex["inputs"], ids + [0] * (12 - len(ids)))
        assert int(ex["mask"].sum()) == len(ids)
        assert int(ex["label"]) == int(rows[i][1])
        assert int(ex["label"]) == reference_value([lo.VOCAB[t] for t in ids])
    assert not (tmp_path / "listops.json").exists()


def test_max_len_shorter_than_a_sequence_is_refused(tmp_path) -> None:
    lo.prepare_listops(lo.ListOpsParams(**{**vars(SMALL), "seed": 0}), tmp_path)
    lengths = {s: [len(lo.tokenize(x)) for x, _ in lo.read_tsv(lo.split_path(tmp_path, s))]
               for s in ("train", "test")}
    longest = int(np.argmax(lengths["train"]))
    with pytest.raises(DataConfigError, match=(
            rf"^data.max_len: basic_train.tsv row {longest + 1} has "
            rf"{lengths['train'][longest]} tokens, more than max_len=")):
        lo.load_listops(cfg(tmp_path, max_len=lengths["train"][longest] - 1))
    # The longest sequence in use fits exactly.
    enough = max(max(v) for v in lengths.values())
    assert lo.load_listops(cfg(tmp_path, max_len=enough)).model_overrides["max_len"] == enough


@pytest.mark.parametrize(("overrides", "message"), [
    ({"listops_min_len": 40}, r"^data.listops_max_len: expected > min_len \+ 1"),
    ({"listops_min_len": 39}, r"^data.listops_max_len: expected > min_len \+ 1"),
    ({"listops_sizes": (5, 0, 5)}, r"^data.listops_sizes: expected three positive"),
    ({"listops_min_len": 2, "listops_max_len": 5, "listops_sizes": (301, 50, 50)},
     r"^data.listops_sizes: 401 distinct trees requested but only 400 exist"),
    ({"listops_tier": "huge"}, r"^data.listops_tier: expected one of"),
    ({"eval_split": "val"}, r"^data.eval_split:"),
])
def test_bad_options_fail_early(tmp_path, overrides, message) -> None:
    with pytest.raises(DataConfigError, match=message):
        lo.load_listops(cfg(tmp_path, **overrides))
    assert not lo.split_path(tmp_path, "train").exists()


def test_impossible_sizes_are_refused_before_sampling() -> None:
    # Lengths 2..4: only the 400 trees of one operator over two digits exist.
    with pytest.raises(ValueError, match="401 distinct trees requested but only 400 exist"):
        lo.generate_listops(lo.ListOpsParams(min_len=1, max_len=5, sizes=(201, 100, 100)))
    # Depth 2 caps the length at 2 + max_args = 12.
    with pytest.raises(ValueError, match=r"^sizes: .* only 0 exist"):
        lo.check_feasible(lo.ListOpsParams(min_len=12, max_len=20, max_depth=2,
                                           sizes=(1, 1, 1)))


def test_tiers_are_lra_and_a_shorter_cpu_tier() -> None:
    lra = lo.TIERS["lra"]
    assert (lra.min_len, lra.max_len, lra.max_depth, lra.max_args, lra.sizes) == (
        500, 2000, 10, 10, (96_000, 2_000, 2_000))
    assert lo.TIERS["cpu"].max_len < lra.max_len
    assert lo.TIERS["cpu"].folder != lra.folder
