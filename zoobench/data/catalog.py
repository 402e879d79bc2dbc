"""The catalogue of datasets zoobench knows: one frozen record each, importable without torch.

A record says what a spec needs to validate and a model needs to be built (task, input shape,
number of outputs, the dataset's own options with their defaults) and where the loader lives; the
loader itself is imported only when data is actually read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from zoobench.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: Literal["classification", "language_modeling", "pde"]
    input_shape: tuple[int, ...]  # one example: (C, H, W) for images, (T,) for tokens, (2,) for (x, t)
    num_outputs: int  # classes, vocabulary size, or 1 for a PDE solution
    loader: str  # "module:function"; function(info, options, data_root) -> the loaded data
    obtain: str  # where the files go and how to get them, shown when they are missing
    options: dict[str, Any] = field(default_factory=dict)  # dataset options and their defaults
    choices: dict[str, tuple] = field(default_factory=dict)
    check: str = ""  # "module:function"(info, options, data_root): cheap test that the files are there
    download: str = ""  # "module:function"(info, data_root): fetch the files (needs network)


_VISION = {"loader": "zoobench.data.vision:load", "check": "zoobench.data.vision:check",
           "download": "zoobench.data.vision:download"}

DATASETS: Registry[DatasetInfo] = Registry("dataset")
for _info in [
    DatasetInfo(
        "digits", "classification", (1, 8, 8), 10, "zoobench.data.digits:load",
        "bundled with scikit-learn, no download needed",
        options={"test_fraction": 0.25, "split_seed": 0},
    ),
    DatasetInfo(  # the digits zoo's transfer target: every image moved by one pixel (see digits.py)
        "digits_shifted", "classification", (1, 8, 8), 10, "zoobench.data.digits:load_shifted",
        "made from scikit-learn's bundled digits, no download needed",
        options={"test_fraction": 0.25, "split_seed": 0, "shift_seed": 0},
    ),
    DatasetInfo("cifar10", "classification", (3, 32, 32), 10, obtain="DATA_ROOT/cifar-10-batches-py/ (the python "
                "version from https://www.cs.toronto.edu/~kriz/cifar.html)", **_VISION),
    DatasetInfo("cifar100", "classification", (3, 32, 32), 100, obtain="DATA_ROOT/cifar-100-python/ (the python "
                "version from https://www.cs.toronto.edu/~kriz/cifar.html)", **_VISION),
    DatasetInfo("svhn", "classification", (3, 32, 32), 10, obtain="DATA_ROOT/train_32x32.mat and "
                "DATA_ROOT/test_32x32.mat (http://ufldl.stanford.edu/housenumbers/)", **_VISION),
    DatasetInfo("stl10", "classification", (3, 32, 32), 10, obtain="DATA_ROOT/stl10_binary/ "
                "(https://cs.stanford.edu/~acoates/stl10/), resized to 32x32 on load", **_VISION),
    DatasetInfo("tinyimagenet", "classification", (3, 64, 64), 200, obtain="DATA_ROOT/tiny-imagenet-200/ with "
                "train/, val/ and val/val_annotations.txt (http://cs231n.stanford.edu/tiny-imagenet-200.zip)",
                **_VISION),
    DatasetInfo("openwebtext", "language_modeling", (1024,), 50304, "zoobench.data.tokens:load",
                "DATA_ROOT/openwebtext/train.bin and val.bin (uint16 GPT-2 tokens, made by nanoGPT's "
                "data/openwebtext/prepare.py)",
                options={"block_size": 1024}, check="zoobench.data.tokens:check",
                download="zoobench.data.tokens:download"),
    DatasetInfo("convection", "pde", (2,), 1, "zoobench.data.convection:load",
                "generated from the PDE, no download needed",
                options={"beta": 1.0, "collocation_points": 100, "test_x": 256, "test_t": 100}),
]:
    DATASETS.add(_info.name, _info)
