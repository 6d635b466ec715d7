"""Image datasets: scikit-learn's 8×8 digits (offline, real) and CIFAR-10 (release or TFDS).

Examples: ``{"inputs": float32 [H, W, C], "label": int32 []}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grain
import numpy as np

from astroflax.data import archives
from astroflax.data.base import Dataset, Example, limit

# Per-channel statistics of the CIFAR-10 training images (the usual normalisation constants).
_CIFAR_MEAN = np.asarray([0.4914, 0.4822, 0.4465], np.float32)
_CIFAR_STD = np.asarray([0.2470, 0.2435, 0.2616], np.float32)


def load_digits(cfg: Mapping[str, Any]) -> Dataset:
    """scikit-learn's 8×8 handwritten digits (1797 images, UCI), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    # The split is fixed (random_state=0), independent of the run seed, so every run of every
    # config is scored on the same 360 test images.
    x_tr, x_te, y_tr, y_te = train_test_split(d.images, d.target, test_size=0.2,
                                              random_state=0, stratify=d.target)

    def arrays(x: np.ndarray, y: np.ndarray, cap: int | None) -> list[Example]:
        n = limit(len(x), cap)
        xs = (x[:n, :, :, None] / 16.0).astype(np.float32)  # pixel counts 0..16 -> [0, 1]
        return [{"inputs": xs[i], "label": np.int32(y[i])} for i in range(n)]

    train = arrays(x_tr, y_tr, cfg.get("num_train"))
    test = arrays(x_te, y_te, cfg.get("num_eval"))
    return Dataset("digits", "classification",
                   grain.MapDataset.source(train), grain.MapDataset.source(test),
                   {"image_size": 8, "in_channels": 1, "num_classes": 10},
                   {"eval_split": "test (20%, stratified, random_state=0)"})


def load_cifar10(cfg: Mapping[str, Any]) -> Dataset:
    """CIFAR-10 (binary release or TFDS ``cifar10``), normalised per channel; crop+flip option."""
    train_src, test_src = archives.release_or_tfds("cifar10", "cifar10", cfg.get("data_dir"))

    def prep(ex: Mapping[str, Any]) -> Example:
        img = (np.asarray(ex["image"], np.float32) / 255.0 - _CIFAR_MEAN) / _CIFAR_STD
        return {"inputs": img.astype(np.float32, copy=False), "label": np.int32(ex["label"])}

    n_tr = limit(len(train_src), cfg.get("num_train"))
    n_te = limit(len(test_src), cfg.get("num_eval"))
    train = grain.MapDataset.source(train_src)[:n_tr].map(prep)
    test = grain.MapDataset.source(test_src)[:n_te].map(prep)
    return Dataset("cifar10", "classification", train, test,
                   {"image_size": 32, "in_channels": 3, "num_classes": 10},
                   {"eval_split": "test", "augment": bool(cfg.get("augment"))})
