"""scikit-learn's bundled 8x8 digits: the embedded default dataset, no download needed.

``digits_shifted`` is its transfer target: the same images, each translated by its own random
offset (zero fill) and mirrored left to right. The classes stay the digits, but every pixel a
digits model learned to read has moved, so a source model must adapt its features (not only its
head) and a model trained from scratch starts with nothing to reuse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoobench.datasets import DatasetInfo
from zoobench.datasets.in_memory import InMemoryClassification


def load(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> InMemoryClassification:
    """A fixed stratified split of the 1797 images; pixel values 0..16 are kept as uint8."""
    x_train, x_test, y_train, y_test = _split(info, options)
    return _dataset(x_train, y_train, x_test, y_test)


def load_shifted(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> InMemoryClassification:
    """The digits split with each image shifted by up to ``max_shift`` pixels and mirrored.

    With the default split options the split is the one `digits` uses, so no target test image is
    a transformed copy of an image a source model was trained on.
    """
    x_train, x_test, y_train, y_test = _split(info, options)
    rng = np.random.default_rng(options["shift_seed"])
    x_train, x_test = (_shift_and_mirror(x, options["max_shift"], rng) for x in (x_train, x_test))
    return _dataset(x_train, y_train, x_test, y_test)


def _split(info: DatasetInfo, options: dict[str, Any]) -> list[np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    images = images.astype(np.uint8).reshape(-1, *info.input_shape)
    return train_test_split(images, labels, test_size=options["test_fraction"], random_state=options["split_seed"],
                            stratify=labels)


def _shift_and_mirror(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """(N, C, H, W) images, each translated by its own offset in [-max_shift, max_shift]^2, then flipped."""
    n, _, height, width = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    offsets = rng.integers(0, 2 * max_shift + 1, size=(n, 2))
    shifted = np.stack([padded[i, :, dy:dy + height, dx:dx + width] for i, (dy, dx) in enumerate(offsets)])
    return np.ascontiguousarray(shifted[..., ::-1])


def _dataset(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> InMemoryClassification:
    x_train_t = torch.from_numpy(np.ascontiguousarray(x_train))
    scaled = x_train_t.float() / 255
    return InMemoryClassification(
        x_train_t, torch.tensor(y_train), torch.from_numpy(np.ascontiguousarray(x_test)), torch.tensor(y_test),
        mean=scaled.mean(dim=(0, 2, 3)), std=scaled.std(dim=(0, 2, 3)),
    )
