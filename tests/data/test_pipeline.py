import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

from astroflax.data import (
    DataNotFoundError,
    eval_batches,
    load_dataset,
    train_batches,
    train_iterator,
)
from astroflax.data.pipeline import augment_image


@pytest.fixture(scope="module")
def digits():
    return load_dataset({"name": "digits"})


def test_digits_is_the_full_stratified_80_20_split_with_explicit_dtypes(digits):
    from sklearn.datasets import load_digits

    d = load_digits()
    assert (digits.num_train, digits.num_eval) == (1437, 360)
    ex = digits.train[0]
    assert ex["inputs"].shape == (8, 8, 1) and ex["inputs"].dtype == np.float32
    assert ex["label"].dtype == np.int32
    test_labels = collections.Counter(int(digits.eval[i]["label"]) for i in range(360))
    full = collections.Counter(d.target.tolist())
    for c in range(10):   # stratified: each class's share of the test set is its 20%
        assert abs(test_labels[c] - 0.2 * full[c]) <= 1
    pixels = np.stack([digits.train[i]["inputs"] for i in range(50)])
    assert pixels.min() == 0.0 and pixels.max() == 1.0   # raw counts 0..16 scaled by 1/16


def test_train_iterator_covers_each_example_once_per_epoch(digits):
    it = train_iterator(digits, 479, seed=3)     # 1437 = 3 x 479: exactly one epoch in 3 batches
    labels = np.concatenate([next(it)["label"] for _ in range(3)])
    np.testing.assert_array_equal(np.bincount(labels, minlength=10),
                                  np.bincount([int(digits.train[i]["label"])
                                               for i in range(1437)], minlength=10))


def test_restored_iterator_yields_the_batches_of_an_uninterrupted_one(digits):
    a = train_iterator(digits, 32, seed=0, augment=True)
    for _ in range(50):                         # past the first epoch boundary (44 batches)
        next(a)
    state = a.get_state()
    expected = [next(a) for _ in range(3)]
    b = train_iterator(digits, 32, seed=0, augment=True)
    b.set_state(state)
    for e in expected:
        got = next(b)
        np.testing.assert_array_equal(got["inputs"], e["inputs"])
        np.testing.assert_array_equal(got["label"], e["label"])


def test_each_process_reads_only_its_rows_of_the_global_batches(digits):
    import dataclasses

    import grain

    reads = []

    def read(i):
        reads.append(int(i))
        return {"index": np.int32(i)}

    spy = dataclasses.replace(digits, train=grain.MapDataset.range(20).map(read))
    whole = train_batches(spy, 8, seed=5)
    for processes in (2, 4):
        local = 8 // processes
        parts = [train_batches(spy, 8, seed=5, rows=(p * local, (p + 1) * local))
                 for p in range(processes)]
        for j in range(12):                       # 20 / 8: batches straddle epoch boundaries
            glob = whole[j]["index"]
            for p, part in enumerate(parts):
                reads.clear()
                got = part[j]["index"]
                np.testing.assert_array_equal(got, glob[p * local:(p + 1) * local])
                assert sorted(reads) == sorted(got.tolist())    # nothing else was read
    epoch = np.concatenate([whole[j]["index"] for j in range(5)])    # two epochs, 40 draws
    np.testing.assert_array_equal(np.sort(epoch[:20]), np.arange(20))
    assert not np.array_equal(epoch[:20], epoch[20:])     # each epoch its own permutation


def test_process_rows_of_augmented_batches_concatenate_to_the_single_process_batch(digits):
    whole = train_iterator(digits, 32, seed=2, augment=True)
    halves = [train_iterator(digits, 32, seed=2, augment=True, rows=r)
              for r in ((0, 16), (16, 32))]
    for _ in range(46):                           # past the first epoch boundary (44 batches)
        w, a, b = next(whole), next(halves[0]), next(halves[1])
        for k in w:
            np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), w[k])


@pytest.mark.parametrize("rows", [(1, 5), (0, 3), (4, 12), (6, 4)])
def test_rows_that_are_not_an_aligned_block_of_the_batch_are_refused(digits, rows):
    with pytest.raises(ValueError, match=r"aligned block of each global batch of 8"):
        train_batches(digits, 8, seed=0, rows=rows)


def test_eval_rows_of_all_processes_concatenate_to_the_single_process_batches(digits):
    whole = list(eval_batches(digits, 64))
    parts = [list(eval_batches(digits, 64, rows=(16 * p, 16 * (p + 1)))) for p in range(4)]
    assert all(len(p) == len(whole) == 6 for p in parts)     # equal counts: collectives line up
    for j, w in enumerate(whole):
        for k in w:
            np.testing.assert_array_equal(np.concatenate([p[j][k] for p in parts]), w[k])
    assert parts[3][-1]["weight"].sum() == 0      # 360 = 5 x 64 + 40: rows 48..63 are padding


def test_an_empty_eval_split_is_named(digits):
    import dataclasses

    empty = dataclasses.replace(digits, eval=digits.eval[:0])
    with pytest.raises(ValueError, match="eval split is empty"):
        next(eval_batches(empty, 8))


def test_eval_batches_visit_every_example_once_and_weight_out_padding(digits):
    batches = list(eval_batches(digits, 64))
    assert len(batches) == 6                     # ceil(360 / 64)
    w = np.concatenate([b["weight"] for b in batches])
    assert w.dtype == np.float32 and w.sum() == 360 and (w[:360] == 1).all()
    got = np.concatenate([b["label"] for b in batches])[:360]
    np.testing.assert_array_equal(got, [digits.eval[i]["label"] for i in range(360)])


def test_augment_image_is_a_crop_of_the_padded_image_or_its_mirror():
    img = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3)
    out = augment_image({"inputs": img, "label": np.int32(1)}, np.random.default_rng(0))["inputs"]
    assert out.shape == img.shape and out.dtype == np.float32
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    crops = [padded[i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
    assert any(np.array_equal(out, c) or np.array_equal(out, c[:, ::-1]) for c in crops)


def test_cifar10_and_imdb_read_through_tfds_data_source_on_mock_data():
    with tfds.testing.mock_data(num_examples=24):
        c = load_dataset({"name": "cifar10"})
        i = load_dataset({"name": "imdb", "max_len": 12, "vocab_size": 100})
    assert c.model_overrides == {"image_size": 32, "in_channels": 3, "num_classes": 10}
    ex = c.train[0]
    assert ex["inputs"].shape == (32, 32, 3) and ex["inputs"].dtype == np.float32
    assert ex["label"].dtype == np.int32 and 0 <= ex["label"] < 10
    t = i.train[0]
    assert t["inputs"].shape == (12,) and t["inputs"].dtype == np.int32
    np.testing.assert_array_equal(t["mask"], t["inputs"] != 0)   # mask = non-padding
    assert i.model_overrides["vocab_size"] <= 100 and i.model_overrides["max_len"] == 12


def test_missing_tfds_data_raises_one_error_with_the_prepare_command(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"tfds build cifar10 --file_format=array_record"):
        load_dataset({"name": "cifar10", "data_dir": str(tmp_path)})


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match=r"data\.name"):
        load_dataset({"name": "mnist"})


def test_imdb_with_a_glove_file_hands_its_vectors_for_the_training_vocabulary_on(tmp_path):
    from flax import nnx

    from astroflax.models import create_model

    glove = tmp_path / "glove.txt"
    with tfds.testing.mock_data(num_examples=24):
        plain = load_dataset({"name": "imdb", "max_len": 12, "vocab_size": 50})
        assert plain.pretrained is None           # no GloVe file: learned embeddings
        glove.write_text("<unk> " + " ".join(["0.5"] * 12) + "\n")
        ds = load_dataset({"name": "imdb", "max_len": 12, "vocab_size": 50,
                           "glove_path": str(glove)})
    kw = ds.model_overrides
    table, found = ds.pretrained["embedding"], ds.pretrained["found"]
    assert table.shape == (kw["vocab_size"], 12) and found.shape == (kw["vocab_size"],)
    # Only "<unk>" (id 1: ids 0 and 1 are "<pad>" and "<unk>") is in the file.
    assert found.tolist() == [i == 1 for i in range(kw["vocab_size"])]
    assert (table[1] == 0.5).all()
    model = create_model("tiny_imdb", **kw, rngs=nnx.Rngs(0))    # embed_dim 12 = file's
    model.load_pretrained(ds.pretrained)
    assert model.embed.vocab_size == kw["vocab_size"]
    assert (np.asarray(model.embed.table[...])[found] == 0.5).all()
