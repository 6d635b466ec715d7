"""CIFAR-10 and IMDB from small archives in the releases' real formats, through load_dataset."""

import io
import logging
import tarfile

import numpy as np
import pytest

from astroflax.data import DataNotFoundError, archives, eval_batches, load_dataset

_MEAN = np.array([0.4914, 0.4822, 0.4465])
_STD = np.array([0.2470, 0.2435, 0.2616])


def _cifar_records(labels, seed):
    """Records of the binary release: label byte, then the R, G and B planes (32×32, by rows)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    data = b"".join(bytes([lab]) + p.tobytes() for lab, p in zip(labels, pixels, strict=True))
    return data, pixels


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_cifar(root, files, as_archive=True):
    """``files``: name -> bytes, written under cifar-10-batches-bin/ as a .tar.gz or a folder."""
    if as_archive:
        with tarfile.open(root / "cifar-10-binary.tar.gz", "w:gz") as tar:
            for name, data in files.items():
                _add(tar, f"cifar-10-batches-bin/{name}", data)
    else:
        (root / "cifar-10-batches-bin").mkdir(parents=True)
        for name, data in files.items():
            (root / "cifar-10-batches-bin" / name).write_bytes(data)


@pytest.fixture
def cifar_files():
    b1, p1 = _cifar_records([3, 9, 0], seed=1)
    b2, p2 = _cifar_records([7, 1], seed=2)
    test, pt = _cifar_records([5, 2], seed=3)
    # Batch 2 stored before batch 1: the reader must order the training batches by number.
    files = {"data_batch_2.bin": b2, "batches.meta.txt": b"airplane\n",
             "data_batch_1.bin": b1, "test_batch.bin": test}
    return files, np.concatenate([p1, p2]), [3, 9, 0, 7, 1], pt, [5, 2]


@pytest.mark.parametrize("as_archive", [True, False])
def test_cifar10_binary_release_gives_normalised_images_in_batch_order(tmp_path, caplog,
                                                                       cifar_files, as_archive):
    files, train_pixels, train_labels, test_pixels, test_labels = cifar_files
    _write_cifar(tmp_path, files, as_archive)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset({"name": "cifar10", "data_dir": str(tmp_path)})
    assert "has 5 records; the official release has 50000" in caplog.text
    assert "has 2 records; the official release has 10000" in caplog.text
    assert (ds.num_train, ds.num_eval) == (5, 2)
    assert ds.model_overrides == {"image_size": 32, "in_channels": 3, "num_classes": 10}
    for split, pixels, labels in ((ds.train, train_pixels, train_labels),
                                  (ds.eval, test_pixels, test_labels)):
        for i, label in enumerate(labels):
            ex = split[i]
            # Pixel (row r, column c) of channel ch is byte ch·1024 + r·32 + c of the record.
            r, c, ch = 5, 17, 2
            raw = pixels[i][ch * 1024 + r * 32 + c]
            assert ex["inputs"].dtype == np.float32 and ex["inputs"].shape == (32, 32, 3)
            np.testing.assert_allclose(ex["inputs"][r, c, ch],
                                       (raw / 255.0 - _MEAN[ch]) / _STD[ch], rtol=1e-5)
            expected = (pixels[i].reshape(3, 32, 32).transpose(1, 2, 0) / 255.0 - _MEAN) / _STD
            np.testing.assert_allclose(ex["inputs"], expected, rtol=1e-5, atol=1e-6)
            assert ex["label"] == label and ex["label"].dtype == np.int32
    batch = next(eval_batches(ds, 4))     # the runner's eval stream reads it too
    np.testing.assert_array_equal(batch["label"], [5, 2, 5, 5])
    np.testing.assert_array_equal(batch["weight"], [1, 1, 0, 0])


def test_cifar10_truncated_record_is_an_error_naming_the_file(tmp_path, cifar_files):
    files = dict(cifar_files[0])
    files["data_batch_1.bin"] = files["data_batch_1.bin"][:-100]
    _write_cifar(tmp_path, files)
    with pytest.raises(DataNotFoundError, match=r"data_batch_1\.bin: 9119 bytes .* truncated"):
        load_dataset({"name": "cifar10", "data_dir": str(tmp_path)})


def test_cifar10_bad_label_byte_is_an_error(tmp_path):
    data, _ = _cifar_records([3, 12], seed=0)
    _write_cifar(tmp_path, {"test_batch.bin": data})
    with pytest.raises(DataNotFoundError, match="label byte 12 outside 0-9"):
        load_dataset({"name": "cifar10", "data_dir": str(tmp_path)})


@pytest.mark.parametrize("damage", ["garbage", "cut"])
def test_an_unreadable_or_cut_archive_is_an_error(tmp_path, cifar_files, damage):
    _write_cifar(tmp_path, cifar_files[0])
    path = tmp_path / "cifar-10-binary.tar.gz"
    data = path.read_bytes()
    path.write_bytes(b"not a gzip file" * 10 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DataNotFoundError, match=r"not a readable \.tar\.gz archive"):
        load_dataset({"name": "cifar10", "data_dir": str(tmp_path)})


def test_the_tfds_manual_download_folder_is_searched(tmp_path, monkeypatch, cifar_files):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    _write_cifar(manual, cifar_files[0])
    assert load_dataset({"name": "cifar10", "data_dir": str(tmp_path)}).num_train == 5
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))       # no data_dir: TFDS's folder
    assert archives.search_dirs(None) == [tmp_path, manual]
    assert load_dataset({"name": "cifar10"}).num_eval == 2


@pytest.mark.parametrize(("name", "archive", "tfds_name"), [
    ("cifar10", "cifar-10-binary.tar.gz", "cifar10"),
    ("imdb", "aclImdb_v1.tar.gz", "imdb_reviews")])
def test_a_missing_dataset_offers_the_archive_and_tfds(tmp_path, name, archive, tfds_name):
    with pytest.raises(DataNotFoundError) as e:
        load_dataset({"name": name, "data_dir": str(tmp_path), "max_len": 8})
    msg = str(e.value)
    assert f"put {archive}" in msg and str(tmp_path / "downloads" / "manual") in msg
    assert f"tfds build {tfds_name} --file_format=array_record" in msg


_REVIEWS = {
    "train/pos/0_9.txt": "A great film!<br />Great acting.",
    "train/pos/1_8.txt": "Loved it, great.",
    "train/neg/0_2.txt": "Dull plot.",
    "train/neg/1_1.txt": "Awful, dull and long.",
    "test/pos/0_10.txt": "Superb zebra.",
    "test/neg/0_3.txt": "Boring.",
    "train/unsup/0_0.txt": "unlabelled words never counted",
}


def _write_imdb(root):
    with tarfile.open(root / "aclImdb_v1.tar.gz", "w:gz") as tar:
        _add(tar, "aclImdb/imdb.vocab", b"the\n")
        for name, text in _REVIEWS.items():
            _add(tar, f"aclImdb/{name}", text.encode())


def test_imdb_release_gives_labelled_reviews_and_ignores_unsup(tmp_path, caplog):
    _write_imdb(tmp_path)
    with caplog.at_level(logging.WARNING):
        train, test = archives.imdb_splits(tmp_path)
    assert "has 4 records; the official release has 25000" in caplog.text
    expected = {s: sorted((t, int("/pos/" in n)) for n, t in _REVIEWS.items()
                          if n.startswith(s) and "unsup" not in n) for s in ("train", "test")}
    assert sorted((r["text"], r["label"]) for r in train) == expected["train"]
    assert sorted((r["text"], r["label"]) for r in test) == expected["test"]


def test_imdb_release_through_load_dataset_builds_the_training_vocabulary(tmp_path):
    _write_imdb(tmp_path)
    ds = load_dataset({"name": "imdb", "data_dir": str(tmp_path), "max_len": 6,
                       "vocab_size": 100})
    assert (ds.num_train, ds.num_eval) == (4, 2)
    # Training words (lower-cased, punctuation split, <br /> removed) plus <pad>, <unk>:
    # a great film ! acting . loved it , dull plot awful and long -> 14 words.
    assert ds.model_overrides == {"vocab_size": 16, "max_len": 6, "num_classes": 2}
    labels = sorted(int(ds.train[i]["label"]) for i in range(4))
    assert labels == [0, 0, 1, 1]
    unk = 1
    test_ids = {int(t) for i in range(2) for t, m in zip(ds.eval[i]["inputs"], ds.eval[i]["mask"],
                                                         strict=True) if m}
    assert unk in test_ids          # "superb", "zebra", "boring" are not training words


def test_imdb_archive_without_reviews_is_an_error(tmp_path):
    with tarfile.open(tmp_path / "aclImdb_v1.tar.gz", "w:gz") as tar:
        _add(tar, "aclImdb/README", b"nothing here")
    with pytest.raises(DataNotFoundError, match="not the IMDB release"):
        load_dataset({"name": "imdb", "data_dir": str(tmp_path), "max_len": 8})
