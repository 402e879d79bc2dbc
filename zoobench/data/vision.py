"""Image classification datasets read by torchvision's own dataset classes and held in memory as uint8.

One table entry per dataset says which files each split reads and how torchvision reads them; the
rest (finding the files, turning failures into one-line errors, checking what was read, statistics)
is shared. Each split is converted to a (N, C, H, W) uint8 tensor once, at load; nothing is cached
on disk, so a load costs about a second for the CIFARs, SVHN and STL-10 and half a minute or so for
TinyImageNet, whose 110k JPEGs are decoded one by one (there is no progress bar: loaders run inside
the executor's workers, under its bar).

torchvision checks the md5 of every file before reading it (CIFAR also of batches.meta, STL-10 also
of the 2.6 GB unlabeled_X.bin, which zoobench never reads). That check belongs to downloading, where
torchvision repeats it: `download` uses the unmodified classes, so a bad download is caught there and
`zoobench data download` replaces files that fail it. Loading uses subclasses that trust files
zoobench has found, which keeps copies of the data (or tiny fabricated ones in tests) readable; a
file that is damaged anyway fails to parse or fails the shape and label checks below.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100, STL10, SVHN, ImageFolder
from torchvision.datasets.folder import default_loader
from torchvision.transforms.v2.functional import resize

from zoobench.data.catalog import DatasetInfo
from zoobench.data.in_memory import InMemoryClassification
from zoobench.errors import ZoobenchError

SPLITS = ("train", "test")
Split = tuple[np.ndarray, Any]  # uint8 images (N, C, H, W) in any memory layout, and N integer labels


class _FilesFound:
    """Mixin for torchvision dataset classes: skip the md5 check (see the module docstring).

    `load` has already made sure every file the split reads exists, which is all the check adds
    for reading.
    """

    def _check_integrity(self) -> bool:
        return True


class _FilesFoundCIFAR(_FilesFound):
    def _load_meta(self) -> None:
        """Skipped: it md5-checks the meta file for class names, and zoobench needs only label indices."""


class _CIFAR10(_FilesFoundCIFAR, CIFAR10):
    pass


class _CIFAR100(_FilesFoundCIFAR, CIFAR100):
    pass


class _SVHN(_FilesFound, SVHN):
    pass


class _STL10(_FilesFound, STL10):
    pass


class _WnidFolder(ImageFolder):
    """ImageFolder whose classes are wnids.txt's, not whatever folders train/ holds.

    Sorted, they are the classes ImageFolder itself would find in a clean train/ (a stray folder
    cannot shift the indices), and the val split maps its annotations through the same list.
    """

    def __init__(self, root: Path, wnids: list[str]) -> None:
        self._wnids = wnids
        super().__init__(root)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self._wnids, {wnid: index for index, wnid in enumerate(self._wnids)}


def _read_cifar(cls: type, root: Path, split: str) -> Split:
    dataset = cls(root, train=split == "train")
    return dataset.data.transpose(0, 3, 1, 2), dataset.targets  # .data is (N, H, W, C)


def _read_by_split_name(cls: type, root: Path, split: str) -> Split:
    """SVHN and STL-10: already (N, C, H, W), labels already 0-based (SVHN's 10 is digit 0)."""
    dataset = cls(root, split=split)
    return dataset.data, dataset.labels


_TINY = "tiny-imagenet-200"


def _read_tinyimagenet(root: Path, split: str) -> Split:
    base = root / _TINY
    wnids = sorted((base / "wnids.txt").read_text().split())
    if split == "train":
        paths, labels = zip(*_WnidFolder(base / "train", wnids).samples)
    else:
        index = {wnid: i for i, wnid in enumerate(wnids)}
        rows = [line.split("\t") for line in (base / "val" / "val_annotations.txt").read_text().splitlines() if line]
        if not rows:
            raise ValueError("val_annotations.txt lists no images")
        unknown = {row[1] for row in rows} - index.keys()
        if unknown:
            raise ValueError(f"val_annotations.txt names classes that wnids.txt lacks: {', '.join(sorted(unknown))}")
        paths = [base / "val" / "images" / row[0] for row in rows]
        labels = [index[row[1]] for row in rows]
    return _decode(paths), labels


def _decode(paths: Sequence[Path | str]) -> np.ndarray:
    """Decode JPEGs straight into one (N, C, H, W) array: no list of arrays, no transposed copy."""
    first = _image(paths[0])
    height, width, channels = first.shape
    images = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    for i, path in enumerate(paths):
        image = _image(path) if i else first
        if image.shape != first.shape:
            raise ValueError(f"{path} is {image.shape[1]}x{image.shape[0]} pixels, {paths[0]} {width}x{height}")
        images[i] = image.transpose(2, 0, 1)
    return images


def _image(path: Path | str) -> np.ndarray:
    """(H, W, 3): default_loader converts grayscale JPEGs to RGB. PIL's errors do not all name the file."""
    try:
        return np.asarray(default_loader(path))
    except OSError as error:
        raise OSError(f"{path}: {error}") from error


@dataclass(frozen=True)
class _Source:
    files: dict[str, tuple[str, ...]]  # split -> the paths under the data root that it reads
    read: Callable[[Path, str], Split]
    downloads: tuple[tuple[type, dict[str, Any]], ...] = ()  # torchvision constructions that fetch it all
    resize: bool = False  # images larger than the dataset's input shape are resized to it on load


def _cifar_files(cls: type) -> dict[str, tuple[str, ...]]:
    return {split: tuple(f"{cls.base_folder}/{name}" for name, _ in listed)
            for split, listed in zip(SPLITS, (cls.train_list, cls.test_list))}


_SOURCES = {
    "cifar10": _Source(_cifar_files(CIFAR10), partial(_read_cifar, _CIFAR10), ((CIFAR10, {"train": True}),)),
    "cifar100": _Source(_cifar_files(CIFAR100), partial(_read_cifar, _CIFAR100), ((CIFAR100, {"train": True}),)),
    "svhn": _Source({split: (SVHN.split_list[split][1],) for split in SPLITS}, partial(_read_by_split_name, _SVHN),
                    tuple((SVHN, {"split": split}) for split in SPLITS)),
    "stl10": _Source({split: tuple(f"{STL10.base_folder}/{split}_{part}.bin" for part in "Xy") for split in SPLITS},
                     partial(_read_by_split_name, _STL10), ((STL10, {"split": "train"}),), resize=True),
    "tinyimagenet": _Source({"train": (f"{_TINY}/wnids.txt", f"{_TINY}/train"),
                             "test": (f"{_TINY}/wnids.txt", f"{_TINY}/val/val_annotations.txt", f"{_TINY}/val/images")},
                            _read_tinyimagenet),
}


def load(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> InMemoryClassification:
    source = _SOURCES[info.name]
    root = _find(info, source, data_root)
    (x_train, y_train), (x_test, y_test) = (_read(info, source, root, split) for split in SPLITS)
    mean, std = channel_stats(x_train)
    return InMemoryClassification(x_train, y_train, x_test, y_test, mean, std)


def check(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> None:
    """Fail before any training starts when a file is missing (reading them is what `load` is for)."""
    _find(info, _SOURCES[info.name], data_root)


def download(info: DatasetInfo, data_root: Path) -> None:
    """Fetch a dataset with torchvision (needs network), which verifies each file's md5."""
    source = _SOURCES[info.name]
    if not source.downloads:
        raise ZoobenchError(f"zoobench cannot download {info.name} (torchvision has no downloader for it): "
                            f"download and unzip it yourself, giving {_obtain(info, data_root)}")
    data_root.mkdir(parents=True, exist_ok=True)
    for cls, arguments in source.downloads:
        try:
            cls(data_root, download=True, **arguments)
        except Exception as error:  # network, disk or checksum: whatever it is, the user must retry
            raise ZoobenchError(f"downloading {info.name} into {data_root} failed: {_describe(error)}") from error


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std of images / 255, as float32 tensors of shape (C,).

    Counted from a 256-bin histogram per channel: exact, and without the float copy of the whole
    dataset that a plain mean/std would make (4.9 GB for TinyImageNet).
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    counts = torch.stack([torch.bincount(images[:, c].flatten(), minlength=256)
                          for c in range(images.shape[1])]).double()
    n = counts.sum(dim=1)
    mean = counts @ values / n
    variance = (counts @ values.square() - n * mean.square()) / (n - 1)
    return mean.float(), variance.sqrt().float()


def _find(info: DatasetInfo, source: _Source, data_root: Path | None) -> Path:
    """The data root, once every file a split reads is known to exist."""
    if data_root is None:
        raise ZoobenchError(f"dataset {info.name} needs files and no data root was given: it expects "
                            f"{info.obtain}; {_how_to_get(info, source, None)}")
    for files in source.files.values():
        for name in files:
            if not (data_root / name).exists():
                raise ZoobenchError(f"dataset {info.name} not found: {data_root / name} does not exist (expected "
                                    f"{_obtain(info, data_root)}); {_how_to_get(info, source, data_root)}")
    return data_root


def _read(info: DatasetInfo, source: _Source, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as a contiguous uint8 (N, C, H, W) tensor and int64 labels, checked against `info`."""
    def unreadable(reason: str) -> ZoobenchError:
        repair = (f"`zoobench data download {info.name} --data-root {root}` replaces files that fail torchvision's "
                  "md5 check" if source.downloads else "unpack the archive again")
        return ZoobenchError(f"could not read the {info.name} {split} split ({', '.join(source.files[split])} in "
                             f"{root}): {reason}; the files may be truncated or corrupt: {repair}")

    try:
        images, labels = source.read(root, split)
    except Exception as error:  # torchvision's readers raise whatever their parser meets in a bad file
        raise unreadable(_describe(error)) from error
    x = torch.from_numpy(np.ascontiguousarray(images))
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if source.resize:
        x = resize(x, list(info.input_shape[1:]), antialias=True)
    if tuple(x.shape[1:]) != info.input_shape:
        raise unreadable(f"images are {tuple(x.shape[1:])}, expected {info.input_shape}")
    if len(y) != len(x):
        raise unreadable(f"{len(x)} images but {len(y)} labels")
    if len(y) and not (0 <= int(y.min()) and int(y.max()) < info.num_outputs):
        raise unreadable(f"labels range from {int(y.min())} to {int(y.max())}, expected 0 to {info.num_outputs - 1}")
    return x, y


def _how_to_get(info: DatasetInfo, source: _Source, data_root: Path | None) -> str:
    root = data_root or "DATA_ROOT"
    fetch = (f"fetch it with `zoobench data download {info.name} --data-root {root}` (needs network)"
             if source.downloads else f"download the archive named above and unzip it into {root}")
    return f"pass the folder that holds it with --data-root or ZOOBENCH_DATA, or {fetch}"


def _obtain(info: DatasetInfo, data_root: Path) -> str:
    return info.obtain.replace("DATA_ROOT", str(data_root))


def _describe(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())  # one line, whatever the message held
