"""scikit-learn's bundled 8x8 digits: the embedded default dataset, no download needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoobench.datasets import DatasetInfo
from zoobench.datasets.in_memory import InMemoryClassification


def load(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> InMemoryClassification:
    """A fixed stratified split of the 1797 images; pixel values 0..16 are kept as uint8."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=options["test_fraction"], random_state=options["split_seed"], stratify=labels
    )

    def images_tensor(x):
        return torch.tensor(x, dtype=torch.uint8).reshape(-1, *info.input_shape)

    x_train_t = images_tensor(x_train)
    scaled = x_train_t.float() / 255
    return InMemoryClassification(
        x_train_t, torch.tensor(y_train), images_tensor(x_test), torch.tensor(y_test),
        mean=scaled.mean(dim=(0, 2, 3)), std=scaled.std(dim=(0, 2, 3)),
    )
