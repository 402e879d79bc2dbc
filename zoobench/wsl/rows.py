"""A zoo as a table of weight rows: one row per (model, epoch), with everything a weight-space learner
may predict, grouped by the shapes of the models' tensors.

Weight-space learning reads a zoo as rows of a matrix and a metrics table beside it (Unterthiner et
al. 2020). Models whose tensors differ in shape (different widths) cannot share a matrix, so every
row also names its shape group. Only models that finished training are rows: a diverged model has
no weights worth learning from at the epochs asked for (the `ModelZooDataset` filters them too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from zoobench.bench.cells import cell_annotations, model_annotations
from zoobench.data.splits import Split, standard_splits
from zoobench.errors import UsageError, ZoobenchError
from zoobench.spec.grid import cells as grid_cells, value_label
from zoobench.store import ZooStore

# the columns every row has, in this order; then the model's other results at the epoch, its own
# annotations, and its cell's annotations prefixed "cell_"
PLACE = ("model_id", "epoch", "cell", "load", "temperature", "seed", "phase")
QUALITY = ("train_loss", "train_acc", "test_loss", "test_acc", "gap")
NOT_RESULTS = ("model_id", "cell_id", "load", "temperature", "seed", "epoch", "diverged", "seconds", "lr")
NOT_ANNOTATIONS = ("cell_id", "load", "temperature", "models", "diverged", "source", "cka_estimator", "reason")


@dataclass(frozen=True)
class ShapeGroup:
    """Rows whose models have the same tensors with the same shapes (state-dict order)."""

    name: str  # e.g. "w32": the load it covers, or "all" when every load has the same shapes
    shapes: dict[str, tuple[int, ...]]
    rows: list[int]  # positions in the zoo's row table

    @property
    def numel(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes.values())


@dataclass(frozen=True)
class ZooRows:
    zoo: ZooStore
    table: Any  # pandas DataFrame, one row per weight row, in grid order, then seed, then epoch
    groups: list[ShapeGroup]
    splits: dict[str, Split]  # over the rows of `table`
    left_out: dict[str, str]  # model id -> why it has no rows


def zoo_rows(zoo: ZooStore, epochs: Sequence[int] | None = None) -> ZooRows:
    """The zoo's rows at `epochs` (default: the metric epoch), their shape groups and the standard splits.

    A row's ``phase`` is its cell's phase at the zoo's metric epoch (the label of the cell, whatever
    epoch the row is); its annotations are those at the row's own epoch (missing where the zoo was
    not annotated at that epoch). The splits assign whole models: every epoch of a model is on one side.
    """
    import pandas as pd

    zoo.require_weights("exporting weights")
    spec = zoo.spec
    epochs = [spec.metric_epoch] if epochs is None else sorted(set(epochs))
    unknown = [e for e in epochs if e not in spec.stored_epochs]
    if unknown:
        raise UsageError(f"{spec.name} stores no checkpoints at epochs {unknown}; stored epochs: "
                         f"{', '.join(map(str, spec.stored_epochs))}")
    per_cell = {e: cell_annotations(zoo, e) for e in {*epochs, spec.metric_epoch}}
    phases = {cell: row.get("phase") for cell, row in per_cell[spec.metric_epoch].items()}
    per_model = {e: model_annotations(zoo, e) for e in epochs}
    order = {c.id: i for i, c in enumerate(grid_cells(spec))}
    records = sorted(zoo.models(), key=lambda r: (order.get(r.cell_id, len(order)), r.seed))
    results = zoo.results([r.id for r in records]) if records else pd.DataFrame()
    rows, left_out, signatures, orders = [], {}, {}, {}
    for record in records:
        missing = [e for e in epochs if e not in record.epochs]
        if record.status != "ok" or missing:
            left_out[record.id] = "diverged" if record.status != "ok" else f"no checkpoint at epochs {missing}"
            continue
        signatures[record.id] = _signature(zoo, record.id, epochs[0], orders)
        mine = results[results["model_id"] == record.id].set_index("epoch")
        for epoch in epochs:
            row = {"model_id": record.id, "epoch": epoch, "cell": record.cell_id, "load": record.load,
                   "temperature": record.temperature, "seed": record.seed, "phase": phases.get(record.cell_id)}
            row.update(_results(mine, epoch))
            row.update({k: v for k, v in per_model[epoch].get(record.id, {}).items()
                        if k not in row and k not in NOT_ANNOTATIONS})
            cell = per_cell[epoch].get(record.cell_id, {})
            row.update({f"cell_{k}": v for k, v in cell.items() if k not in NOT_ANNOTATIONS and k != "phase"})
            rows.append(row)
    if not rows:
        diverged = sum(why == "diverged" for why in left_out.values())
        raise ZoobenchError(f"{spec.name} has no finished model with checkpoints at epochs {epochs}: nothing to "
                            f"export ({diverged} of {len(left_out)} stored models diverged); `zoobench zoo generate "
                            f"{spec.name}` trains the missing ones")
    table = pd.DataFrame(rows)
    table = table[[*PLACE, *[c for c in table.columns if c not in PLACE]]]
    groups = _shape_groups(table, signatures, spec.grid.load.short)
    splits = standard_splits(table["model_id"].tolist(), table["load"].tolist(), table["phase"].tolist())
    return ZooRows(zoo, table, groups, splits, left_out)


def _results(results, epoch: int) -> dict[str, Any]:
    """The model's logged numbers at `epoch`, quality first, with the generalisation gap (train - test
    accuracy) where there is accuracy."""
    found = {k: v for k, v in results.loc[epoch].items() if k not in NOT_RESULTS} if epoch in results.index else {}
    found = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in found.items()}
    if isinstance(found.get("train_acc"), float) and isinstance(found.get("test_acc"), float):
        found["gap"] = found["train_acc"] - found["test_acc"]
    return {**{k: found.get(k) for k in QUALITY}, **found}


def _shape_groups(table, signatures: dict[str, tuple], short: str) -> list[ShapeGroup]:
    by_signature: dict[tuple, list[int]] = {}
    for position, model_id in enumerate(table["model_id"]):
        by_signature.setdefault(signatures[model_id], []).append(position)
    groups = []
    for signature, rows in by_signature.items():
        loads = list(dict.fromkeys(table["load"].iloc[rows]))
        name = "all" if len(by_signature) == 1 else "+".join(f"{short}{value_label(v)}" for v in loads)
        groups.append(ShapeGroup(name, dict(signature), rows))
    return groups



def _signature(zoo: ZooStore, model_id: str, epoch: int, orders: dict[str, list[str]]) -> tuple:
    """(name, shape) of every tensor of the model's checkpoint, in the order of its module's state dict
    (a checkpoint file sorts its names: "10.weight" would come before "2.weight")."""
    import json

    from zoobench.models import build_model

    recipe = zoo.params(model_id)["recipe"]
    key = json.dumps(recipe["model"], sort_keys=True)
    if key not in orders:
        orders[key] = list(build_model(recipe).state_dict())
    shapes = zoo.tensor_shapes(model_id, epoch)
    if set(shapes) != set(orders[key]):
        raise ZoobenchError(f"model {model_id}'s checkpoint has tensors {sorted(shapes)}, its architecture has "
                            f"{sorted(orders[key])}; delete {zoo.path / 'models' / model_id} and re-run "
                            f"`zoobench zoo generate {zoo.spec.name}`")
    return tuple((name, shapes[name]) for name in orders[key])
