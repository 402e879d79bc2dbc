"""Datasets: the catalogue, the task-data protocol every dataset implements, and loading.

Nothing here imports torch until data is actually read.
"""

from zoobench.data.catalog import DATASETS, DatasetInfo
from zoobench.data.loading import check_files, download, load_data, load_dataset
from zoobench.data.protocol import Batch, TaskData

__all__ = ["DATASETS", "Batch", "DatasetInfo", "TaskData", "check_files", "download", "load_data", "load_dataset"]
