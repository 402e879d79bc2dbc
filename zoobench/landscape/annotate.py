"""Annotating a zoo with loss-landscape metrics, cell by cell, as resumable units of work.

Each metric's unit is one cell: a per-model metric (clean eval, Hessian) annotates its seeds one by
one and gives the cell their seed means, a per-cell metric (CKA, mode connectivity) compares them.
Units run in the same executor as training and are skipped when their stored result is current
(see `annotations.py`). Which metrics exist is the catalogue's business (`landscape.registry`).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zoobench.errors import UsageError
from zoobench.execution import Execution
from zoobench.landscape.annotations import Annotations
from zoobench.landscape.registry import METRICS, seed_mean
from zoobench.spec import ZooSpec
from zoobench.spec.grid import cells
from zoobench.store import Store, ZooStore


@dataclass
class AnnotationReport:
    done: dict[str, int] = field(default_factory=dict)  # metric -> cells annotated now
    current: dict[str, int] = field(default_factory=dict)  # metric -> cells already annotated
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AnnotateUnit:
    """One metric on one cell's models at one epoch."""

    label: str  # the cell
    spec: ZooSpec
    zoo_path: str
    metric: str
    epoch: int
    data_root: str | None
    device: str
    size: int = 1

    def __call__(self) -> str:
        annotate_cell(ZooStore(Path(self.zoo_path), self.spec), self.metric, self.label, self.epoch, self.data_root,
                      self.device)
        return self.label


def annotate(spec: ZooSpec, store: Store | None = None, *, metrics: Sequence[str] | None = None,
             epoch: int | None = None, execution: Execution = Execution()) -> AnnotationReport:
    """Compute the missing annotations of every cell that has finished models; returns what it did.

    `metrics` defaults to every registered metric, in registration order."""
    metrics = list(METRICS) if metrics is None else list(metrics)
    for metric in metrics:
        if metric not in METRICS:
            raise METRICS.unknown(metric)
    zoo = (store or Store()).zoo(spec)
    zoo.require_weights("annotating")
    epoch = spec.metric_epoch if epoch is None else epoch
    if epoch not in spec.stored_epochs:
        raise UsageError(f"epoch {epoch} is not stored by {spec.name}; stored: {', '.join(map(str, spec.stored_epochs))}")
    with_models = {r.cell_id for r in zoo.models()}
    if not with_models:
        raise UsageError(f"zoo {spec.name} has no finished models in {zoo.path}; run `zoobench zoo generate {spec.name}`")
    report = AnnotationReport()
    executor = None
    with zoo.writing():
        for metric in metrics:
            started = time.perf_counter()
            annotations = Annotations(zoo, metric, epoch)
            todo = [c.id for c in cells(spec) if c.id in with_models and not annotations.is_current(c.id)]
            report.current[metric] = len(with_models) - len(todo)
            if todo:
                executor = executor or execution.start()
                device = execution.unit_runtime(executor).device
                units = [AnnotateUnit(cell_id, spec, str(zoo.path), metric, epoch, execution.root, device)
                         for cell_id in todo]
                for _ in executor.run(units, f"{metric:<7} {spec.name}", "cells", execution.progress):
                    pass
            report.done[metric] = len(todo)
            report.seconds[metric] = time.perf_counter() - started
    return report


def annotate_cell(zoo: ZooStore, metric: str, cell_id: str, epoch: int, data_root: str | None, device: str) -> None:
    """Compute `metric` for a cell's models at `epoch` and store it."""
    from zoobench.data import load_data

    started = time.perf_counter()
    record = METRICS.get(metric)
    settings = zoo.spec.annotation_settings(metric)
    annotations = Annotations(zoo, metric, epoch)
    inputs = annotations.inputs(cell_id)
    healthy = {model_id: zoo.load_model(model_id, epoch).to(device)
               for model_id, status in sorted(inputs.items()) if status != "diverged"}
    data = load_data(zoo.params(next(iter(inputs)))["recipe"], data_root).to(device)  # the cell's (a PINN's beta)
    compute = record.function()
    if record.scope == "model":
        per_model = {model_id: compute(model, data, settings) for model_id, model in healthy.items()}
        cell = seed_mean(per_model.values())
    else:
        per_model, cell = {}, compute(list(healthy.values()), data, settings)
    pairs = {f"{a}|{b}": _clean(values)
             for (a, b), values in zip(itertools.combinations(healthy, 2), cell.pop("pairs", []))}
    cell["diverged"] = len(inputs) - len(healthy)
    annotations.write(cell_id, inputs, {model_id: _clean(values) for model_id, values in per_model.items()},
                      _clean(cell), time.perf_counter() - started, pairs)


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in values.items()}
