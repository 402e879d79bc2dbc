"""Building the `Cell` views that methods receive, from a zoo's store and its annotations."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from zoobench.landscape.registry import per_model_metrics
from zoobench.method import Cell
from zoobench.spec.grid import cells as grid_cells
from zoobench.store import ZooStore


def cell_annotations(zoo: ZooStore, epoch: int) -> dict[str, dict[str, Any]]:
    """Cell id -> the cell's stored metrics with its phase and reason (NaN as None)."""
    from zoobench.landscape.phases import phase_table

    table = phase_table(zoo, epoch)
    return {row["cell_id"]: _plain(row) for row in table.to_dict("records")}


def model_annotations(zoo: ZooStore, epoch: int) -> dict[str, dict[str, Any]]:
    """Model id -> its per-model metrics (clean eval, Hessian, ...) at `epoch`."""
    from zoobench.landscape.annotations import Annotations

    found: dict[str, dict[str, Any]] = {}
    for metric in per_model_metrics():
        for row in Annotations(zoo, metric, epoch).models().to_dict("records"):
            model_id = row.pop("model_id")
            row.pop("cell_id")
            found.setdefault(model_id, {}).update(_plain(row))
    return found


def open_cells(zoo: ZooStore, epoch: int | None = None, device: str = "cpu", data_root: str | Path | None = None,
               annotations: dict[str, dict] | None = None, per_model: dict[str, dict] | None = None) -> dict[str, Cell]:
    """Cell id -> `Cell` for every cell with finished models, in grid order (hot rows first is the
    report's business, not this one's). Annotations are read from the store unless given."""
    epoch = zoo.spec.metric_epoch if epoch is None else epoch
    annotations = cell_annotations(zoo, epoch) if annotations is None else annotations
    per_model = model_annotations(zoo, epoch) if per_model is None else per_model
    records = zoo.models()
    opened = {}
    for grid_cell in grid_cells(zoo.spec):
        members = sorted((r for r in records if r.cell_id == grid_cell.id), key=lambda r: r.seed)
        if not members:
            continue
        healthy = [r.id for r in members if r.status == "ok" and epoch in r.epochs]
        opened[grid_cell.id] = Cell(
            grid_cell.id, grid_cell.load, grid_cell.temperature, epoch, healthy,
            [r.id for r in members if r.id not in healthy], annotations.get(grid_cell.id, {}),
            {m: per_model.get(m, {}) for m in healthy}, zoo, device, Path(data_root) if data_root else None,
        )
    return opened


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
