"""Stored loss-landscape annotations: one JSON file per (metric, settings, epoch) and cell.

A cell's file is written atomically and records the checkpoints it was computed from (their SHA-256
from the models' completion markers), so an annotation is redone when its settings change (they
are part of the folder's key), when a model is retrained, or when a seed is added to the cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from zoobench import atomic
from zoobench.grid import cells
from zoobench.store import MARKER, WEIGHTS, ZooStore, checkpoint_name

METRICS = ("eval", "hessian", "cka", "mc")
PER_MODEL = {"eval", "hessian"}  # the others compare the seeds of a cell
VERSION = 1  # bump when a metric's computation changes, so stored values are recomputed


class Annotations:
    """The annotations of one metric, at one epoch, with the zoo spec's settings for that metric."""

    def __init__(self, zoo: ZooStore, metric: str, epoch: int | None = None) -> None:
        self.zoo = zoo
        self.metric = metric
        self.epoch = zoo.spec.metric_epoch if epoch is None else epoch
        settings = getattr(zoo.spec.annotation, metric, None)
        self.settings = {"metric": metric, "version": VERSION, "epoch": self.epoch,
                         "settings": dataclasses.asdict(settings) if settings is not None else {}}
        key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:10]
        self.folder = zoo.path / "annotations" / f"{metric}-e{self.epoch}-{key}"

    def inputs(self, cell_id: str) -> dict[str, str]:
        """Model id -> hash of the checkpoint the metric reads ("diverged" when there is none)."""
        return checkpoint_hashes(self.zoo, self.epoch).get(cell_id, {})

    def is_current(self, cell_id: str) -> bool:
        try:
            stored = json.loads((self.folder / f"{cell_id}.json").read_text())
        except (OSError, ValueError):
            return False
        return stored.get("inputs") == self.inputs(cell_id)

    def write(self, cell_id: str, inputs: dict[str, str], models: dict[str, dict], cell: dict[str, Any],
              seconds: float) -> None:
        if not (self.folder / "settings.json").exists():
            atomic.write_json(self.folder / "settings.json", self.settings)
        atomic.write_json(self.folder / f"{cell_id}.json", {"cell_id": cell_id, "inputs": inputs, "models": models,
                                                             "cell": cell, "seconds": seconds})

    def records(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in sorted(self.folder.glob("*.json"))
                if path.name != "settings.json"]

    def cells(self):
        """One row per annotated cell: its grid position, how many models, and the cell's values (pandas)."""
        import pandas as pd

        position = {c.id: c for c in cells(self.zoo.spec)}
        rows = [{"cell_id": r["cell_id"], "load": position[r["cell_id"]].load,
                 "temperature": position[r["cell_id"]].temperature, "models": len(r["inputs"]), **r["cell"]}
                for r in self.records() if r["cell_id"] in position]
        return pd.DataFrame(rows)

    def models(self):
        """One row per model for the per-model metrics (eval, hessian) (pandas)."""
        import pandas as pd

        return pd.DataFrame([{"model_id": model_id, "cell_id": r["cell_id"], **values}
                             for r in self.records() for model_id, values in r["models"].items()])


def checkpoint_hashes(zoo: ZooStore, epoch: int) -> dict[str, dict[str, str]]:
    """Cell id -> model id -> SHA-256 of the model's checkpoint at `epoch` (its status when it has none).

    What a result computed from a cell's models depends on: any retrained or added model changes it.
    """
    path = f"{checkpoint_name(epoch)}/{WEIGHTS}"
    found: dict[str, dict[str, str]] = {}
    for record in zoo.models():
        files = json.loads((record.path / MARKER).read_text())["files"]
        found.setdefault(record.cell_id, {})[record.id] = files[path]["sha256"] if path in files else record.status
    return found


def cell_table(zoo: ZooStore, metrics: tuple[str, ...] = METRICS, epoch: int | None = None):
    """Every annotated cell with the values of all metrics side by side (pandas)."""
    import pandas as pd

    frames = [Annotations(zoo, metric, epoch).cells() for metric in metrics]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["cell_id", "load", "temperature", "models"])
    table = frames[0]
    for frame in frames[1:]:
        table = table.merge(frame, on=["cell_id", "load", "temperature"], how="outer", suffixes=("", "_dup"))
        table = table.drop(columns=[c for c in table.columns if c.endswith("_dup")])
    return table

