"""Stored loss-landscape annotations: one JSON file per (metric, settings, epoch) and cell.

A cell's file is written atomically and records the checkpoints it was computed from (their SHA-256
from the models' completion markers), so an annotation is redone when its settings change (they
are part of the folder's key), when a model is retrained, or when a seed is added to the cell.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

from zoobench.errors import UsageError
from zoobench.landscape.registry import METRICS
from zoobench.spec.grid import cells
from zoobench.store import ZooStore, atomic, published


class Annotations:
    """The annotations of one metric, at one epoch, with the zoo spec's settings for that metric."""

    def __init__(self, zoo: ZooStore, metric: str, epoch: int | None = None) -> None:
        self.zoo = zoo
        self.metric = metric
        self.epoch = zoo.spec.metric_epoch if epoch is None else epoch
        self.settings = {"metric": metric, "version": METRICS.get(metric).version, "epoch": self.epoch,
                         "settings": dataclasses.asdict(zoo.spec.annotation_settings(metric))}
        key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:10]
        self.folder = zoo.path / "annotations" / f"{metric}-e{self.epoch}-{key}"

    def inputs(self, cell_id: str) -> dict[str, str]:
        """Model id -> hash of the checkpoint the metric reads ("diverged" when there is none)."""
        return self._checkpoints.get(cell_id, {})

    @functools.cached_property
    def _checkpoints(self) -> dict[str, dict[str, str]]:
        """Every cell's checkpoint hashes, read once per planning pass (not once per cell)."""
        return self.zoo.checkpoint_hashes(self.epoch)

    def is_current(self, cell_id: str) -> bool:
        try:
            stored = json.loads((self.folder / f"{cell_id}.json").read_text())
        except (OSError, ValueError):
            return False
        return stored.get("inputs") == self.inputs(cell_id)

    def write(self, cell_id: str, inputs: dict[str, str], models: dict[str, dict], cell: dict[str, Any],
              seconds: float, pairs: dict[str, dict] | None = None) -> None:
        """One cell's values: per model, for the cell, and per pair of models ("a|b") where the metric
        compares seeds."""
        if not (self.folder / "settings.json").exists():
            atomic.write_json(self.folder / "settings.json", self.settings)
        atomic.write_json(self.folder / f"{cell_id}.json", {"cell_id": cell_id, "inputs": inputs, "models": models,
                                                             "cell": cell, "pairs": pairs or {}, "seconds": seconds})

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
        """One row per model, for a per-model metric (pandas)."""
        import pandas as pd

        return pd.DataFrame([{"model_id": model_id, "cell_id": r["cell_id"], **values}
                             for r in self.records() for model_id, values in r["models"].items()])

    def pairs(self) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
        """Cell id -> (model id, model id) -> the values of that pair, for a metric that compares seeds
        (empty for annotations stored before pairs were kept)."""
        return {r["cell_id"]: {tuple(key.split("|")): values for key, values in r.get("pairs", {}).items()}
                for r in self.records()}


SOURCES = ("computed", "published")


def cell_table(zoo: ZooStore, epoch: int | None = None, source: str | None = None):
    """Every annotated cell with the values of every metric side by side (pandas), from one source:
    the annotations zoobench computed, or those the zoo's authors published (`zoobench.store.
    published`). The two never mix: by default computed ones when the zoo has any at this epoch, else
    published ones. The `source` column says which, and `cka_estimator` which CKA estimator made the
    CKA column."""
    import pandas as pd

    epoch = zoo.spec.metric_epoch if epoch is None else epoch
    if source is not None and source not in SOURCES:
        raise UsageError(f"unknown annotation source '{source}'; valid: {', '.join(SOURCES)}")
    computed = [] if source == "published" else [
        f for f in (Annotations(zoo, metric, epoch).cells() for metric in METRICS) if not f.empty]
    stored = None if source == "computed" else published.read(zoo, epoch)
    if source is None:
        source = "published" if stored is not None and not computed else "computed"
    if source == "published":
        if stored is None:
            raise UsageError(f"zoo {zoo.spec.name} has no published annotations at epoch {epoch}; "
                             f"published epochs: {', '.join(map(str, published.epochs(zoo))) or 'none'}")
        position = {c.id: c for c in cells(zoo.spec)}
        rows = [{"cell_id": c["cell_id"], "load": position[c["cell_id"]].load,
                 "temperature": position[c["cell_id"]].temperature, "models": c["models"], **c["cell"]}
                for c in stored["cells"] if c["cell_id"] in position]
        table = pd.DataFrame(rows, columns=None if rows else ["cell_id", "load", "temperature", "models"])
        return _grid_order(zoo, table).assign(source="published", cka_estimator=stored["provenance"]["columns"]["cka"])
    if not computed:
        return pd.DataFrame(columns=["cell_id", "load", "temperature", "models", "source", "cka_estimator"])
    table = computed[0]
    for frame in computed[1:]:
        table = table.merge(frame, on=["cell_id", "load", "temperature"], how="outer", suffixes=("", "_dup"))
        table = table.drop(columns=[c for c in table.columns if c.endswith("_dup")])
    return _grid_order(zoo, table).assign(source="computed", cka_estimator=_cka_estimator(zoo))


def _grid_order(zoo: ZooStore, table):
    """Cells in the spec's grid order (load, then temperature), not in the order of their file names."""
    rank = {c.id: i for i, c in enumerate(cells(zoo.spec))}
    return table.sort_values("cell_id", key=lambda ids: ids.map(rank)).reset_index(drop=True)


def _cka_estimator(zoo: ZooStore) -> str:
    settings = zoo.spec.annotation_settings("cka") if "cka" in METRICS else None
    return settings.describe() if hasattr(settings, "describe") else "unknown"
