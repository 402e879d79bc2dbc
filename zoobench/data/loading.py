"""Reading a recipe's dataset (once per process), checking its files are there, and fetching them.

The catalogue (`zoobench.data.catalog`) says where each dataset's loader, file check and downloader
live; they are imported only here, when data is actually needed, so that listing or validating
zoos never imports torch.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from zoobench.data.catalog import DATASETS
from zoobench.data.protocol import TaskData
from zoobench.registry import load_target


@functools.lru_cache(maxsize=4)
def _load_cached(dataset: str, options_json: str, data_root: str | None) -> TaskData:
    info = DATASETS.get(dataset)
    loader = load_target(info.loader, f"dataset '{dataset}'")
    return loader(info, json.loads(options_json), Path(data_root) if data_root else None)


def load_data(recipe: dict[str, Any], data_root: str | Path | None = None) -> TaskData:
    """The dataset of a recipe (``ZooSpec.recipe()`` or a params.json's "recipe"), loaded once per process
    and shared by every model trained or evaluated on it. An option the recipe lacks (one added to the
    dataset after the zoo was stored) takes its default, which is the behaviour from before it existed."""
    data = recipe["data"]
    options = {**DATASETS.get(data["dataset"]).options, **data["options"]}
    return _load_cached(data["dataset"], json.dumps(options, sort_keys=True),
                        str(data_root) if data_root else None)


def load_dataset(dataset: str, data_root: str | Path | None = None, **options: Any) -> TaskData:
    """A dataset by name with its default options (e.g. a transfer target), overridden by `options`."""
    info = DATASETS.get(dataset)
    return load_data({"data": {"dataset": dataset, "options": {**info.options, **options}}}, data_root)


def check_files(dataset: str, options: dict[str, Any], data_root: str | Path | None) -> None:
    """Fail with a one-line error that names the expected files when a dataset's data is missing;
    also fails when its loader cannot be imported."""
    info = DATASETS.get(dataset)
    load_target(info.loader, f"dataset '{info.name}'")
    if info.check:
        load_target(info.check, f"dataset '{info.name}'")(info, options, Path(data_root) if data_root else None)


def download(dataset: str, data_root: str | Path) -> str:
    """Fetch a dataset's files into `data_root` with torchvision's downloader (needs network); returns
    what was done, in words. Datasets that need no files say so and fetch nothing."""
    info = DATASETS.get(dataset)
    if not info.download:
        return f"{dataset} needs no download: {info.obtain}"
    load_target(info.download, f"dataset '{dataset}'")(info, Path(data_root))
    return f"{dataset} is in {data_root}"
