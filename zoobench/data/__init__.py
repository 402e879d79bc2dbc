"""Datasets: the catalogue, the task-data protocol every dataset implements, and loading; and
`WeightDataset`, a zoo's weights as a dataset for weight-space learning.

Nothing here imports torch until data is actually read. `WeightDataset` reads the store and its
annotations, so it sits with the stages above them (`zoobench.data.weights`, see the package
docstring) and is bound here by name on first use, as the package root binds its API.
"""

from importlib import import_module

from zoobench.data.catalog import DATASETS, DatasetInfo
from zoobench.data.loading import check_files, download, load_data, load_dataset
from zoobench.data.protocol import Batch, TaskData

__all__ = ["DATASETS", "Batch", "DatasetInfo", "TaskData", "WeightDataset", "check_files", "download", "load_data",
           "load_dataset"]


def __getattr__(name: str):
    if name == "WeightDataset":
        return import_module("zoobench.data.weights").WeightDataset
    raise AttributeError(f"module 'zoobench.data' has no attribute {name!r}")
