"""Tiny fake datasets written in the real on-disk formats, for tests that cannot download anything.

Each `fabricate_<name>(root, ...)` writes what the real download leaves under a data root and
returns what a loader should read back: images as (N, C, H, W) uint8 at the files' own size and
labels as 0-based int64 in the order torchvision reads them. Images are one colour per class plus
noise, so a model can learn them. `fabricate(name, root)` picks the writer by dataset name.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class FabricatedImages:
    x_train: np.ndarray  # (N, C, H, W) uint8 as written (TinyImageNet's JPEGs decode only close to it)
    y_train: np.ndarray  # (N,) int64, the labels the loader should return
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class FabricatedTokens:
    train: np.ndarray  # uint16 tokens of train.bin
    val: np.ndarray


def class_images(labels: np.ndarray, classes: int, size: int, rng: np.random.Generator, noise: int = 20) -> np.ndarray:
    """(N, 3, size, size) uint8: each class's own colour (far from the others') plus uniform noise."""
    levels = np.linspace(24, 232, 6)  # 216 colours at least 41 apart per channel
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    colours = grid[np.random.default_rng(classes).permutation(len(grid))[:classes]]  # fixed per class count
    pixels = colours[labels][:, :, None, None] + rng.integers(-noise, noise + 1, (len(labels), 3, size, size))
    return pixels.clip(0, 255).astype(np.uint8)


def _labelled(classes: int, n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, classes, n)
    return class_images(labels, classes, size, rng), labels


def _pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=2)  # the real files are Python 2 pickles


def _cifar_images(classes: int, n_train: int, n_test: int, seed: int) -> FabricatedImages:
    rng = np.random.default_rng(seed)
    (x_train, y_train), (x_test, y_test) = _labelled(classes, n_train, 32, rng), _labelled(classes, n_test, 32, rng)
    return FabricatedImages(x_train, y_train, x_test, y_test)


def _rows(images: np.ndarray) -> np.ndarray:
    """A pickled batch's "data": 3072 bytes per image, the red, green and blue 32x32 planes row-major."""
    return images.reshape(len(images), -1)


def fabricate_cifar10(root: Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> FabricatedImages:
    """cifar-10-batches-py/: data_batch_1..5 (the train set in order), test_batch, batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    data = _cifar_images(10, n_train, n_test, seed)
    for number, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _pickle(folder / f"data_batch_{number}", {
            "batch_label": f"training batch {number} of 5", "labels": data.y_train[part].tolist(),
            "data": _rows(data.x_train[part]), "filenames": [f"train_{i}.png" for i in part]})
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": data.y_test.tolist(),
                                    "data": _rows(data.x_test), "filenames": [f"test_{i}.png" for i in range(n_test)]})
    _pickle(folder / "batches.meta", {"num_cases_per_batch": n_train // 5, "num_vis": 3072,
                                      "label_names": [f"class_{c}" for c in range(10)]})
    return data


def fabricate_cifar100(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> FabricatedImages:
    """cifar-100-python/: train and test (fine and coarse labels) and meta."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    data = _cifar_images(100, n_train, n_test, seed)
    for name, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        _pickle(folder / name, {"filenames": [f"{name}_{i}.png" for i in range(len(y))], "batch_label": name,
                                "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": _rows(x)})
    _pickle(folder / "meta", {"fine_label_names": [f"fine_{c}" for c in range(100)],
                              "coarse_label_names": [f"coarse_{c}" for c in range(20)]})
    return data


def fabricate_svhn(root: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> FabricatedImages:
    """train_32x32.mat and test_32x32.mat: X is (32, 32, 3, N) uint8, y is (N, 1) with 10 for digit 0."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = []
    for name, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        y[:2] = 0  # digit 0 is stored as 10: make sure each split has some
        x = class_images(y, 10, 32, rng)
        stored_labels = np.where(y == 0, 10, y)[:, None].astype(np.uint8)
        savemat(root / f"{name}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": stored_labels})
        splits += [x, y]
    return FabricatedImages(*splits)


def fabricate_stl10(root: Path, n_train: int = 30, n_test: int = 20, seed: int = 0) -> FabricatedImages:
    """stl10_binary/: {train,test}_{X,y}.bin and class_names.txt; images are 96x96, labels 1..10.

    Each image is stored channel by channel, each channel column-major (as MATLAB wrote them).
    """
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = []
    for name, n in (("train", n_train), ("test", n_test)):
        x, y = _labelled(10, n, 96, rng)
        (folder / f"{name}_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{name}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
        splits += [x, y]
    (folder / "class_names.txt").write_text("".join(f"class_{c}\n" for c in range(10)))
    return FabricatedImages(*splits)


def fabricate_tinyimagenet(root: Path, classes: int = 4, per_class: int = 6, n_val: int = 12,
                           seed: int = 0) -> FabricatedImages:
    """tiny-imagenet-200/ with wnids.txt (not sorted, as the real one is not), words.txt, JPEGs in
    train/<wnid>/images/ next to <wnid>_boxes.txt, val/images/ and val/val_annotations.txt.

    Labels index the sorted wnids; the train set comes back sorted by class, then file name. The
    first train image is written as grayscale, as some real ones are; its expected pixels are the
    gray value in all three channels.
    """
    base = root / "tiny-imagenet-200"
    rng = np.random.default_rng(seed)
    wnids = [f"n{number:08d}" for number in rng.choice(10**8, classes, replace=False)]
    index = {wnid: i for i, wnid in enumerate(sorted(wnids))}
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in wnids))
    (base / "words.txt").write_text("".join(f"{wnid}\tthing {i}\n" for i, wnid in enumerate(wnids)))

    def save(path: Path, image: np.ndarray, grayscale: bool = False) -> np.ndarray:
        picture = Image.fromarray(image.transpose(1, 2, 0))
        if grayscale:
            picture = picture.convert("L")
        picture.save(path, "JPEG", quality=95)
        return np.asarray(picture.convert("RGB")).transpose(2, 0, 1)

    train_x, train_y = [], []
    for wnid in sorted(wnids):  # the order ImageFolder reads them in
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True, exist_ok=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(per_class)))
        labels = np.full(per_class, index[wnid])
        images = class_images(labels, classes, 64, rng)
        for i in sorted(range(per_class), key=lambda i: f"{wnid}_{i}.JPEG"):
            train_x.append(save(folder / f"{wnid}_{i}.JPEG", images[i], grayscale=not train_x))
            train_y.append(index[wnid])

    val_wnids = [wnids[i] for i in rng.integers(0, classes, n_val)]
    val_y = np.array([index[wnid] for wnid in val_wnids])
    val_x = np.stack([save(base / "val" / "images" / f"val_{i}.JPEG", image)
                      for i, image in enumerate(class_images(val_y, classes, 64, rng))])
    (base / "val" / "val_annotations.txt").write_text(
        "".join(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63\n" for i, wnid in enumerate(val_wnids)))
    return FabricatedImages(np.stack(train_x), np.array(train_y), val_x, val_y)


def fabricate_openwebtext(root: Path, n_train: int = 8192, n_val: int = 4096, vocab: int = 97,
                          seed: int = 0) -> FabricatedTokens:
    """openwebtext/train.bin and val.bin as nanoGPT's prepare.py writes them: raw uint16 tokens.

    The default sizes hold a few blocks of the default block_size (1024).
    """
    folder = root / "openwebtext"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train, val = (rng.integers(0, vocab, n).astype(np.uint16) for n in (n_train, n_val))
    train.tofile(folder / "train.bin")
    val.tofile(folder / "val.bin")
    return FabricatedTokens(train, val)


FABRICATORS: dict[str, Callable[..., FabricatedImages | FabricatedTokens]] = {
    "cifar10": fabricate_cifar10,
    "cifar100": fabricate_cifar100,
    "svhn": fabricate_svhn,
    "stl10": fabricate_stl10,
    "tinyimagenet": fabricate_tinyimagenet,
    "openwebtext": fabricate_openwebtext,
}


def fabricate(name: str, root: Path, **sizes) -> FabricatedImages | FabricatedTokens:
    """Write a tiny `name` dataset under root; `sizes` go to its fabricate_<name> function."""
    return FABRICATORS[name](Path(root), **sizes)
