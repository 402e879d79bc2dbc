"""scikit-learn's bundled 8x8 digits: the embedded default dataset, no download needed.

``digits_shifted`` is its transfer target: the same images and classes, every image moved by one
pixel in a random direction (zero fill). A model that reads pixels where it was trained to find
them (an MLP does) loses most of its accuracy on it (about 0.9 -> 0.3 for the digits zoo's good
cells), so it has to adapt its features, not only its head; a model trained from scratch on it
starts with nothing to reuse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoobench.data.catalog import DatasetInfo
from zoobench.data.in_memory import InMemoryClassification


def load(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> InMemoryClassification:
    """A fixed stratified split of the 1797 images; pixel values 0..16 are kept as uint8."""
    x_train, x_test, y_train, y_test = _split(info, options)
    return _dataset(x_train, y_train, x_test, y_test)


def load_shifted(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> InMemoryClassification:
    """The digits split with every image moved by one pixel, in one of the 8 directions.

    With the default split options the split is the one `digits` uses, so no target test image is
    a shifted copy of an image a source model was trained on.
    """
    x_train, x_test, y_train, y_test = _split(info, options)
    rng = np.random.default_rng(options["shift_seed"])
    return _dataset(_shift(x_train, rng), y_train, _shift(x_test, rng), y_test)


def _split(info: DatasetInfo, options: dict[str, Any]) -> list[np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    images = images.astype(np.uint8).reshape(-1, *info.input_shape)
    return train_test_split(images, labels, test_size=options["test_fraction"], random_state=options["split_seed"],
                            stratify=labels)


def _shift(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, C, H, W) images, each translated by its own offset (dy, dx) != (0, 0) in {-1, 0, 1}^2, zero fill."""
    _, _, height, width = images.shape
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    chosen = rng.integers(0, len(offsets), size=len(images))
    return np.stack([padded[i, :, 1 - dy:1 - dy + height, 1 - dx:1 - dx + width]
                     for i, (dy, dx) in enumerate(offsets[c] for c in chosen)])


def _dataset(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> InMemoryClassification:
    x_train_t = torch.from_numpy(np.ascontiguousarray(x_train))
    scaled = x_train_t.float() / 255
    return InMemoryClassification(
        x_train_t, torch.tensor(y_train), torch.from_numpy(np.ascontiguousarray(x_test)), torch.tensor(y_test),
        mean=scaled.mean(dim=(0, 2, 3)), std=scaled.std(dim=(0, 2, 3)),
    )
