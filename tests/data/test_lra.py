"""LRA Text, Retrieval, Image and Pathfinder from small files in the releases' real layouts."""

import io
import logging
import tarfile

import numpy as np
import pytest
from PIL import Image

from astroflax.data import DataConfigError, DataNotFoundError, eval_batches
from astroflax.data.lra import (
    load_lra_image,
    load_lra_pathfinder,
    load_lra_retrieval,
    load_lra_text,
)
from astroflax.data.lra_files import LRA_URL


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _expected_bytes(data, length):
    """ByteTextEncoder ids by hand: byte b -> b + 1, then zeros (padding) up to ``length``."""
    ids = [b + 1 for b in data[:length]]
    return tuple(ids + [0] * (length - len(ids)))


def _examples(split):
    return [split[i] for i in range(len(split))]


# ---------------------------------------------------------------------------------------------
# Text: IMDB at the byte level


_REVIEWS = {
    # Surrounding whitespace is stripped (TFDS's builder does); UTF-8 é stays two bytes.
    "train/pos/0_9.txt": b"  Caf\xc3\xa9 au lait: great!\n",
    # Latin-1 é is not UTF-8: the raw byte 0xE9 is kept, not a replacement character.
    "train/neg/0_2.txt": b"Bad \xe9t\xe9 film",
    "train/pos/1_8.txt": b"0123456789abcdefghij",      # longer than max_len: cut
    "train/unsup/0_0.txt": b"never read",
    "test/neg/0_1.txt": b"Dull.",
    "test/pos/0_10.txt": b"Superb.\r\n",
}


def _write_imdb(root):
    with tarfile.open(root / "aclImdb_v1.tar.gz", "w:gz") as tar:
        for name, data in _REVIEWS.items():
            _add(tar, f"aclImdb/{name}", data)


def test_text_is_the_review_bytes_plus_one_stripped_and_cut(tmp_path):
    _write_imdb(tmp_path)
    ds = load_lra_text({"data_dir": str(tmp_path), "max_len": 12})
    assert ds.name == "lra_text" and ds.task == "classification"
    assert ds.model_overrides == {"vocab_size": 257, "max_len": 12, "num_classes": 2}
    assert (ds.num_train, ds.num_eval) == (3, 2)
    for split, prefix in ((ds.train, "train/"), (ds.eval, "test/")):
        got = set()
        for ex in _examples(split):
            assert ex["inputs"].dtype == np.int32 and ex["inputs"].shape == (12,)
            assert ex["mask"].dtype == bool and ex["label"].dtype == np.int32
            np.testing.assert_array_equal(ex["mask"], ex["inputs"] != 0)
            got.add((tuple(ex["inputs"].tolist()), int(ex["label"])))
        want = {(_expected_bytes(data.strip(), 12), int("/pos/" in name))
                for name, data in _REVIEWS.items() if name.startswith(prefix)
                and "unsup" not in name}
        assert got == want
    # By hand: "Dull." = 68 117 108 108 46, each + 1, then padding.
    dull = next(ex for ex in _examples(ds.eval) if ex["label"] == 0)
    assert dull["inputs"].tolist() == [69, 118, 109, 109, 47] + [0] * 7
    bad = next(ex for ex in _examples(ds.train) if ex["label"] == 0)
    assert bad["inputs"][4] == 0xE9 + 1


def test_text_defaults_to_4000_bytes_and_has_only_the_test_split(tmp_path):
    _write_imdb(tmp_path)
    ds = load_lra_text({"data_dir": str(tmp_path), "num_train": 1})
    assert ds.train[0]["inputs"].shape == (4000,) and ds.num_train == 1
    with pytest.raises(DataConfigError, match=r"data\.eval_split: lra_text evaluates on"):
        load_lra_text({"data_dir": str(tmp_path), "eval_split": "validation"})


def test_text_missing_archive_names_it_and_where_to_put_it(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        load_lra_text({"data_dir": str(tmp_path)})
    assert "put aclImdb_v1.tar.gz" in str(e.value)
    assert str(tmp_path / "downloads" / "manual") in str(e.value)


def test_text_cut_archive_is_one_clear_error(tmp_path):
    _write_imdb(tmp_path)
    path = tmp_path / "aclImdb_v1.tar.gz"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataNotFoundError, match=r"aclImdb_v1\.tar\.gz is not a readable"):
        load_lra_text({"data_dir": str(tmp_path)})


# ---------------------------------------------------------------------------------------------
# Retrieval: AAN pairs


_AAN = {
    "train": [(b"1", b"P00-1001", b"P01-2002", b"b'Attention is all'", b"b'Long \\n range'"),
              (b"0.0", b"P02-3003", b"P03-4004", b"b'Short'", b"b'A much longer document'"),
              (b"1.0", b"P04-5005", b"P05-6006", b"x", b"y"),
              (b"0", b"P06-7007", b"P07-8008", b"caf\xc3\xa9", b"")],
    "eval": [(b"1", b"E1", b"E2", b"eval one", b"eval two"),
             (b"0", b"E3", b"E4", b"eval three", b"eval four")],
    "test": [(b"0", b"T1", b"T2", b"test one", b"test two"),
             (b"1", b"T3", b"T4", b"test three", b"test four"),
             (b"1", b"T5", b"T6", b"test five", b"test six")],
}


def _write_aan(folder, rows=_AAN):
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():
        (folder / f"new_aan_pairs.{split}.tsv").write_bytes(
            b"".join(b"\t".join(fields) + b"\n" for fields in lines))


def _expected_pairs(split, length):
    return {(_expected_bytes(f[3], length), _expected_bytes(f[4], length), int(float(f[0])))
            for f in _AAN[split]}


def _pairs(split):
    out = set()
    for ex in _examples(split):
        assert ex["inputs"].shape == (2, 16) and ex["inputs"].dtype == np.int32
        assert ex["mask"].shape == (2, 16) and ex["mask"].dtype == bool
        np.testing.assert_array_equal(ex["mask"], ex["inputs"] != 0)
        out.add((tuple(ex["inputs"][0].tolist()), tuple(ex["inputs"][1].tolist()),
                 int(ex["label"])))
    return out


def test_retrieval_reads_the_release_layout_as_two_byte_rows(tmp_path, caplog):
    _write_aan(tmp_path / "lra_release" / "lra_release" / "tsv_data")
    with caplog.at_level(logging.WARNING):
        ds = load_lra_retrieval({"data_dir": str(tmp_path), "max_len": 16})
    assert "has 4 pairs; the release's has 147086" in caplog.text
    assert ds.name == "lra_retrieval" and ds.task == "classification"
    assert ds.model_overrides == {"vocab_size": 257, "max_len": 16, "num_classes": 2}
    assert _pairs(ds.train) == _expected_pairs("train", 16)
    assert _pairs(ds.eval) == _expected_pairs("test", 16)       # eval_split defaults to test
    # Fields as stored: the b'...' wrapper and the two characters "\n" are bytes of the text.
    first = next(ex for ex in _examples(ds.train) if ex["inputs"][0][2] == ord("A") + 1)
    assert first["inputs"][1][:10].tolist() == [c + 1 for c in b"b'Long \\n "]
    batch = next(eval_batches(ds, 4))
    assert batch["inputs"].shape == (4, 2, 16) and batch["weight"].tolist() == [1, 1, 1, 0]


def test_retrieval_validation_split_and_caps(tmp_path):
    _write_aan(tmp_path / "tsv_data")
    ds = load_lra_retrieval({"data_dir": str(tmp_path), "max_len": 16,
                             "eval_split": "validation", "num_train": 2})
    assert _pairs(ds.eval) == _expected_pairs("eval", 16)
    assert ds.num_train == 2 and _pairs(ds.train) <= _expected_pairs("train", 16)
    with pytest.raises(DataConfigError, match=r"data\.eval_split"):
        load_lra_retrieval({"data_dir": str(tmp_path), "eval_split": "dev"})


def test_retrieval_truncated_file_names_file_and_line(tmp_path):
    folder = tmp_path / "tsv_data"
    _write_aan(folder)
    path = folder / "new_aan_pairs.train.tsv"
    data = path.read_bytes()
    path.write_bytes(data[:data.rindex(b"caf")])      # cut inside text1 of the last line
    with pytest.raises(DataNotFoundError,
                       match=r"new_aan_pairs\.train\.tsv, line 4: 4 tab-separated fields"):
        load_lra_retrieval({"data_dir": str(tmp_path)})
    path.write_bytes(data.replace(b"0.0\t", b"maybe\t"))
    with pytest.raises(DataNotFoundError, match=r"line 2: label b'maybe' is not 0 or 1"):
        load_lra_retrieval({"data_dir": str(tmp_path)})


def test_retrieval_missing_files_say_where_they_come_from(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        load_lra_retrieval({"data_dir": str(tmp_path)})
    msg = str(e.value)
    assert "tsv_data/new_aan_pairs.train.tsv not found" in msg and LRA_URL in msg
    assert str(tmp_path / "downloads" / "manual") in msg and "still packed" not in msg
    (tmp_path / "lra_release.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DataNotFoundError, match="still packed: extract it first"):
        load_lra_retrieval({"data_dir": str(tmp_path)})
    _write_aan(tmp_path / "aan", {"train": _AAN["train"], "test": _AAN["test"]})
    assert load_lra_retrieval({"data_dir": str(tmp_path)}).num_eval == 3   # needs no eval file
    with pytest.raises(DataNotFoundError, match=r"new_aan_pairs\.eval\.tsv \(next to"):
        load_lra_retrieval({"data_dir": str(tmp_path), "eval_split": "validation"})


# ---------------------------------------------------------------------------------------------
# Image: CIFAR-10 in grey levels

# Hand-computed tf.image.rgb_to_grayscale values, trunc(255.5 · (0.2989 r + 0.587 g + 0.114 b)
# / 255): pure green 149.98 -> 149 (truncation, not rounding), white 255.47 -> 255,
# red 76.37 -> 76, blue 29.13 -> 29, (10, 20, 30) 18.18 -> 18.
_KNOWN = {(0, 0): ((0, 255, 0), 149), (0, 1): ((255, 255, 255), 255), (0, 2): ((255, 0, 0), 76),
          (0, 3): ((0, 0, 255), 29), (5, 17): ((10, 20, 30), 18)}


def _cifar_batch(labels, seed, known=False):
    rng = np.random.default_rng(seed)
    planes = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    if known:
        for (r, c), (rgb, _) in _KNOWN.items():
            planes[0, :, r, c] = rgb
    data = b"".join(bytes([lab]) + p.tobytes() for lab, p in zip(labels, planes, strict=True))
    return data, planes


def _write_cifar(root, batches):
    with tarfile.open(root / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for name, data in batches.items():
            _add(tar, f"cifar-10-batches-bin/{name}", data)


def _grey_reference(planes):
    """float64 formula per pixel, and where it is too near an integer for float32 to agree."""
    w = np.array([0.2989, 0.587, 0.114])
    exact = np.einsum("c,ncrw->nrw", w, planes / 255.0) * 255.5
    near = np.abs(exact - np.round(exact)) < 1e-3
    return np.floor(exact).reshape(len(planes), -1), near.reshape(len(planes), -1)


def test_image_is_tf_greyscale_tokens_rows_first_on_lra_split(tmp_path, caplog):
    train_data, train_planes = _cifar_batch(list(range(10)), seed=1, known=True)
    test_data, test_planes = _cifar_batch([4, 2, 7], seed=2)
    _write_cifar(tmp_path, {"data_batch_1.bin": train_data, "test_batch.bin": test_data})
    with caplog.at_level(logging.WARNING):
        ds = load_lra_image({"data_dir": str(tmp_path)})
    assert ds.name == "lra_image" and ds.task == "classification"
    assert ds.model_overrides == {"vocab_size": 256, "max_len": 1024, "num_classes": 10}
    assert (ds.num_train, ds.num_eval) == (9, 3)           # train[:90%] of 10; the test batch
    first = ds.train[0]
    assert first["inputs"].dtype == np.int32 and first["inputs"].shape == (1024,)
    assert first["mask"].dtype == bool and first["mask"].all()
    for (r, c), (_, grey) in _KNOWN.items():
        assert first["inputs"][r * 32 + c] == grey
    for split, planes, labels in ((ds.train, train_planes[:9], range(9)),
                                  (ds.eval, test_planes, [4, 2, 7])):
        want, near = _grey_reference(planes)
        for i, label in enumerate(labels):
            ex = split[i]
            assert ex["label"] == label and ex["label"].dtype == np.int32
            ok = (ex["inputs"] == want[i]) | near[i]
            assert ok.all(), np.flatnonzero(~ok)
    val = load_lra_image({"data_dir": str(tmp_path), "eval_split": "validation"})
    assert val.num_eval == 1 and val.eval[0]["label"] == 9     # train[90%:], never trained on


def test_image_options_and_missing_release(tmp_path):
    with pytest.raises(DataConfigError, match=r"data\.max_len: lra_image sequences are the 1024"):
        load_lra_image({"data_dir": str(tmp_path), "max_len": 4000})
    with pytest.raises(DataNotFoundError, match=r"put cifar-10-binary\.tar\.gz"):
        load_lra_image({"data_dir": str(tmp_path)})


def test_image_truncated_record_is_an_error_naming_the_file(tmp_path):
    data, _ = _cifar_batch([1, 2], seed=0)
    _write_cifar(tmp_path, {"data_batch_1.bin": data[:-10]})
    with pytest.raises(DataNotFoundError, match=r"data_batch_1\.bin: 6136 bytes .* truncated"):
        load_lra_image({"data_dir": str(tmp_path)})


# ---------------------------------------------------------------------------------------------
# Pathfinder-32: PNGs + metadata


def _write_pathfinder(root, files=("0", "1", "2", "10"), per_file=5, empty=(3,)):
    """Metadata files ``<k>.npy`` of ``per_file`` lines each and their PNGs; returns the
    examples ``(pixels uint8 [32, 32], label)`` in metadata order (numeric file order)."""
    rng = np.random.default_rng(0)
    examples = []
    (root / "metadata").mkdir(parents=True)
    for k in sorted(files, key=int):
        lines = []
        for j in range(per_file):
            pixels = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
            label = int(rng.integers(0, 2))
            (root / "imgs" / k).mkdir(parents=True, exist_ok=True)
            path = root / "imgs" / k / f"sample_{j}.png"
            if len(examples) in empty:
                path.write_bytes(b"")
            else:
                Image.fromarray(pixels).save(path)
            lines.append(f"imgs/{k} sample_{j}.png {j} {label} 14 2 0.75\n")
            examples.append((pixels, label))
        (root / "metadata" / f"{k}.npy").write_text("".join(lines))
    return examples


def test_pathfinder_reads_pngs_in_metadata_order_on_lra_split(tmp_path, caplog):
    root = tmp_path / "lra_release" / "pathfinder32" / "curv_contour_length_14"
    examples = _write_pathfinder(root)
    with caplog.at_level(logging.WARNING):
        ds = load_lra_pathfinder({"data_dir": str(tmp_path)})
    assert "lists 20 images; LRA's config implies 200000" in caplog.text
    assert ds.name == "lra_pathfinder" and ds.task == "classification"
    assert ds.model_overrides == {"vocab_size": 256, "max_len": 1024, "num_classes": 2}
    # [:80%] = 16 examples less the empty image 3; test = [90%:] = the last 2 (of 10.npy).
    assert (ds.num_train, ds.num_eval) == (15, 2)
    assert ds.info["empty_images_skipped"] == 1
    for split, want in ((ds.train, examples[:3] + examples[4:16]), (ds.eval, examples[18:])):
        for i, (pixels, label) in enumerate(want):
            ex = split[i]
            assert ex["inputs"].dtype == np.int32 and ex["inputs"].shape == (1024,)
            assert ex["inputs"][5 * 32 + 17] == pixels[5, 17]         # row 5, column 17
            np.testing.assert_array_equal(ex["inputs"], pixels.reshape(-1))
            assert ex["mask"].all() and ex["label"] == label and ex["label"].dtype == np.int32
    val = load_lra_pathfinder({"data_dir": str(root), "eval_split": "validation",
                               "num_train": 4})
    np.testing.assert_array_equal(val.eval[1]["inputs"], examples[17][0].reshape(-1))
    assert val.num_train == 4 and val.train[3]["label"] == examples[4][1]   # 3 is skipped


def test_pathfinder_truncated_png_is_an_error_naming_it(tmp_path):
    root = tmp_path / "pathfinder32" / "curv_contour_length_14"
    _write_pathfinder(root)
    png = root / "imgs" / "10" / "sample_4.png"                      # the last test image
    png.write_bytes(png.read_bytes()[:40])
    ds = load_lra_pathfinder({"data_dir": str(tmp_path)})
    with pytest.raises(DataNotFoundError, match=r"sample_4\.png: not a readable PNG"):
        ds.eval[1]


def test_pathfinder_missing_image_and_bad_metadata_name_the_file(tmp_path):
    root = tmp_path / "pathfinder32" / "curv_contour_length_14"
    _write_pathfinder(root)
    (root / "imgs" / "1" / "sample_2.png").unlink()
    with pytest.raises(DataNotFoundError, match=r"sample_2\.png: listed in metadata/ but missing"):
        load_lra_pathfinder({"data_dir": str(tmp_path)})
    meta = root / "metadata" / "2.npy"
    text = meta.read_text()
    meta.write_text(text[:text.index("\n") + 1] + "imgs/2 sample_1.png 1 ")   # cut in line 2
    with pytest.raises(DataNotFoundError, match=r"2\.npy, line 2: expected 'folder file"):
        load_lra_pathfinder({"data_dir": str(tmp_path)})


def test_pathfinder_missing_release_says_where_it_comes_from(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        load_lra_pathfinder({"data_dir": str(tmp_path)})
    msg = str(e.value)
    assert "pathfinder32/curv_contour_length_14/metadata/ not found" in msg and LRA_URL in msg
    with pytest.raises(DataConfigError, match=r"data\.max_len"):
        load_lra_pathfinder({"data_dir": str(tmp_path), "max_len": 512})
