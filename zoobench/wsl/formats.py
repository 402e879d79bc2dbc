"""The two export formats: what a weight row holds, how its columns are named, and the files beside it.

- ``wsl``: zoobench's own. Every tensor of the state dict (BatchNorm statistics included) in the
  module's state-dict order, as PyTorch lays it out, so a row turns back into the exact state dict;
  ``layout.csv`` has ``name,shape,offset,numel,dtype`` and ``metrics.csv`` every number the store has.
- ``unterthiner``: the Small CNN Zoo (Unterthiner et al. 2020, `google-research/dnn_predict_accuracy`)
  as NFN's `ZooDataset` reads it: ``layout.csv`` with ``varname,start_idx,end_idx,shape`` (a Python
  tuple literal), kernels as ``<layer>/kernel:0`` in TensorFlow order (dense: in x out; convolution:
  h x w x in x out) and biases as ``<layer>/bias:0``, ``metrics.csv.gz`` with ``step`` (the epoch),
  ``test_accuracy``, ``train_accuracy``, ``test_loss``, ``train_loss``, ``config.*`` and the model id,
  and ``idcs.csv``, a seeded shuffle of the rows, one integer per line (NFN's ``idcs_file``).
  That format has no place for anything but dense and convolution layers, so BatchNorm, LayerNorm
  and attention are refused.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoobench.data.splits import SEED
from zoobench.errors import UsageError
from zoobench.wsl import readme


@dataclass(frozen=True)
class Column:
    """One tensor's block of a weight row."""

    name: str  # as the format names it
    key: str  # the state-dict key it comes from
    shape: tuple[int, ...]  # as the format lays it out
    dtype: str  # of the state-dict tensor
    order: tuple[int, ...] | None = None  # axes permutation from PyTorch's layout (None: as is)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def values(self, state: dict) -> np.ndarray:
        """The tensor's block of the row, float32 (integers, e.g. BatchNorm's step count, must fit exactly)."""
        tensor = state[self.key].detach().cpu()
        if self.order is not None:
            tensor = tensor.permute(*self.order)
        raw = tensor.reshape(-1).float().numpy() if tensor.is_floating_point() else tensor.reshape(-1).numpy()
        values = raw.astype(np.float32)
        if not tensor.is_floating_point() and not np.array_equal(values, raw):
            raise UsageError(f"tensor {self.key} holds integers beyond float32's exact range")
        return values


def _dtype(tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


class WSL:
    name = "wsl"

    def columns(self, state: dict, zoo: str) -> list[Column]:
        return [Column(key, key, tuple(tensor.shape), _dtype(tensor)) for key, tensor in state.items()]

    def group_files(self, table, columns: list[Column], splits: dict, spec) -> dict[str, str | bytes]:
        import pandas as pd

        offsets = np.cumsum([0, *(c.numel for c in columns)])
        layout = pd.DataFrame([{"name": c.name, "shape": json.dumps(list(c.shape)), "offset": int(o),
                                "numel": c.numel, "dtype": c.dtype} for c, o in zip(columns, offsets)])
        return {"layout.csv": layout.to_csv(index=False), "metrics.csv": table.to_csv(index=False),
                "splits.json": json.dumps(splits) + "\n"}

    def readme(self, spec, rows, epochs: list[int]) -> str:
        return readme.wsl(spec, rows, epochs)


class Unterthiner:
    name = "unterthiner"
    RENAMED = {"epoch": "step", "test_acc": "test_accuracy", "train_acc": "train_accuracy"}
    LAYERS = {2: (1, 0), 4: (2, 3, 1, 0)}  # PyTorch -> TensorFlow kernel axes: dense, convolution

    def columns(self, state: dict, zoo: str) -> list[Column]:
        columns = []
        for key, tensor in state.items():
            layer, _, kind = key.rpartition(".")
            shape = tuple(tensor.shape)
            if kind == "weight" and len(shape) in self.LAYERS:
                order = self.LAYERS[len(shape)]
                columns.append(Column(f"{layer.replace('.', '/')}/kernel:0", key, tuple(shape[i] for i in order),
                                      _dtype(tensor), order))
            elif kind == "bias" and len(shape) == 1:
                columns.append(Column(f"{layer.replace('.', '/')}/bias:0", key, shape, _dtype(tensor)))
            else:
                raise UsageError(f"the Small CNN Zoo layout holds dense and convolution layers only, and {zoo}'s "
                                 f"models have '{key}' {list(shape)} (BatchNorm, LayerNorm or attention): use "
                                 f"--format wsl")
        return columns

    def group_files(self, table, columns: list[Column], splits: dict, spec) -> dict[str, str | bytes]:
        import pandas as pd

        starts = np.cumsum([0, *(c.numel for c in columns)])
        layout = pd.DataFrame([{"varname": c.name, "start_idx": int(s), "end_idx": int(s) + c.numel,
                                "shape": repr(c.shape)} for c, s in zip(columns, starts)])
        metrics = table.rename(columns=self.RENAMED)
        config = {f"config.{spec.grid.load.field}": table["load"],
                  f"config.{spec.grid.temperature.field}": table["temperature"], "config.seed": table["seed"]}
        metrics = pd.concat([metrics, pd.DataFrame(config)], axis=1)
        shuffled = np.random.default_rng(SEED).permutation(len(table))
        return {"layout.csv": layout.to_csv(index=False), "metrics.csv.gz": _gzip(metrics.to_csv(index=False)),
                "idcs.csv": "".join(f"{i}\n" for i in shuffled), "splits.json": json.dumps(splits) + "\n"}

    def readme(self, spec, rows, epochs: list[int]) -> str:
        return readme.unterthiner(spec, rows, epochs)


FORMATS: dict[str, Any] = {f.name: f for f in (WSL(), Unterthiner())}


def _gzip(text: str) -> bytes:
    """Gzip without a timestamp, so the same export gives the same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
        handle.write(text.encode())
    return buffer.getvalue()
