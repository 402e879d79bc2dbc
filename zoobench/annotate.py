"""Annotating a zoo with loss-landscape metrics, cell by cell, as resumable units of work.

Each metric's unit is one cell: the per-model metrics (clean eval, Hessian) annotate its seeds one
by one, the others (CKA, mode connectivity) compare them. Units run in the same executor as
training and are skipped when their stored result is current (see `annotations.py`).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zoobench.annotations import METRICS, Annotations
from zoobench.errors import UsageError
from zoobench.grid import cells
from zoobench.spec import ZooSpec
from zoobench.store import Store, ZooStore


@dataclass
class AnnotationReport:
    done: dict[str, int] = field(default_factory=dict)  # metric -> cells annotated now
    current: dict[str, int] = field(default_factory=dict)  # metric -> cells already annotated
    seconds: dict[str, float] = field(default_factory=dict)


def annotate(spec: ZooSpec, store: Store | None = None, metrics: Sequence[str] = METRICS, epoch: int | None = None,
             workers: int | None = None, data_root: str | Path | None = None, device: str = "auto",
             show_progress: bool = True, executor=None) -> AnnotationReport:
    """Compute the missing annotations of every cell that has finished models; returns what it did.

    Units run on `device` ("auto": the GPU when there is one) and on `executor` (default: a
    `LocalExecutor` for the device, with `workers` processes on CPU)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UsageError(f"unknown metric '{unknown[0]}'; valid: {', '.join(METRICS)}")
    zoo = (store or Store()).zoo(spec)
    epoch = spec.metric_epoch if epoch is None else epoch
    if epoch not in spec.stored_epochs:
        raise UsageError(f"epoch {epoch} is not stored by {spec.name}; stored: {', '.join(map(str, spec.stored_epochs))}")
    with_models = {r.cell_id for r in zoo.models()}
    if not with_models:
        raise UsageError(f"zoo {spec.name} has no finished models in {zoo.path}; run `zoobench zoo generate {spec.name}`")
    report = AnnotationReport()
    with zoo.writing():
        for metric in metrics:
            started = time.perf_counter()
            annotations = Annotations(zoo, metric, epoch)
            todo = [c.id for c in cells(spec) if c.id in with_models and not annotations.is_current(c.id)]
            report.current[metric] = len(with_models) - len(todo)
            if todo:
                from zoobench.executor import LocalExecutor, Unit
                from zoobench.runtime import runtime_for_units

                device = runtime_for_units(device, executor).device
                executor = executor or LocalExecutor(workers, device)
                root = str(data_root) if data_root else None
                units = [Unit(cell_id, 1, (spec, str(zoo.path), metric, cell_id, epoch, root, device)) for cell_id in todo]
                for _ in executor.run(annotate_cell, units, f"{metric:<7} {spec.name}", "cells",
                                                    show_progress):
                    pass
            report.done[metric] = len(todo)
            report.seconds[metric] = time.perf_counter() - started
    return report


def annotate_cell(spec: ZooSpec, zoo_path: str, metric: str, cell_id: str, epoch: int, data_root: str | None,
                  device: str) -> str:
    """One unit: compute `metric` for a cell's models at `epoch` and store it."""
    from zoobench.grid import ModelKey, cell as grid_cell, model_spec
    from zoobench.training import load_data

    started = time.perf_counter()
    zoo = ZooStore(Path(zoo_path), spec)
    annotations = Annotations(zoo, metric, epoch)
    inputs = annotations.inputs(cell_id)
    models = {model_id: zoo.load_model(model_id, epoch).to(device) if status not in ("diverged",) else None
              for model_id, status in inputs.items()}
    record = zoo.record(next(iter(inputs)))
    key = ModelKey(grid_cell(spec, record.load, record.temperature), record.seed)
    data = load_data(model_spec(spec, key).recipe(), data_root).to(device)  # the cell's data (a PINN's beta)
    per_model, cell = _METRICS[metric](spec, models, data)
    cell["diverged"] = sum(model is None for model in models.values())
    annotations.write(cell_id, inputs, {k: _clean(v) for k, v in per_model.items()}, _clean(cell),
                      time.perf_counter() - started)
    return cell_id


def _eval(spec: ZooSpec, models: dict, data) -> tuple[dict, dict]:
    per_model = {}
    for model_id, model in _healthy(models):
        train, test = data.evaluate(model, "train"), data.evaluate(model, "test")
        values = {**{f"train_{k}": v for k, v in train.items()}, **{f"test_{k}": v for k, v in test.items()}}
        if "acc" in train and "acc" in test:
            values["gap"] = train["acc"] - test["acc"]  # generalization gap, clean
        per_model[model_id] = values
    return per_model, _mean(per_model)


def _hessian(spec: ZooSpec, models: dict, data) -> tuple[dict, dict]:
    from zoobench.metrics.hessian import hessian_metrics

    settings = spec.annotation.hessian
    batches = data.fixed_batches("train", settings.batches, settings.batch_size, settings.seed)
    per_model = {model_id: hessian_metrics(model.eval(), _loss(data), batches, trace=settings.trace,
                                           max_hvps=settings.max_hvps, tol=settings.tol, seed=settings.seed)
                 for model_id, model in _healthy(models)}
    cell = _mean(per_model)
    traces = [v["hessian_trace"] for v in per_model.values() if v["hessian_trace"] > 0]
    cell["hessian_log_trace"] = sum(map(math.log, traces)) / len(traces) if traces else None
    return per_model, cell


def _cka(spec: ZooSpec, models: dict, data) -> tuple[dict, dict]:
    import torch

    from zoobench.metrics.cka import mean_pairwise_cka

    settings = spec.annotation.cka
    inputs = data.fixed_batches("test", 1, settings.samples, settings.seed)[0][0]
    with torch.no_grad():
        logits = [model.eval()(inputs) for _, model in _healthy(models)]
    if len(logits) < 2:
        return {}, {"cka": None, "cka_pairs": 0}
    mean, pairs = mean_pairwise_cka(logits)
    return {}, {"cka": mean, "cka_pairs": len(pairs)}


def _mc(spec: ZooSpec, models: dict, data) -> tuple[dict, dict]:
    import torch

    from zoobench.metrics.connectivity import bezier_curve_mc, linear_path, recalibrate_batchnorm

    settings = spec.annotation.mc
    calibration = data.fixed_batches("train", 10, settings.batch_size, settings.seed)

    def recalibrate(model) -> None:
        recalibrate_batchnorm(model, calibration, lambda m, batch: m(batch[0]))

    def error(model) -> float:
        result = data.evaluate(model.eval(), "train")
        return 1 - result["acc"] if "acc" in result else result["loss"]

    generator = torch.Generator().manual_seed(settings.seed)
    pairs = []
    for (_, a), (_, b) in itertools.combinations(_healthy(models), 2):
        line = linear_path(a, b, error, recalibrate, settings.alphas)
        curve = bezier_curve_mc(a, b, _loss(data), lambda: data.batches(settings.batch_size, generator, None), error,
                                recalibrate, epochs=settings.epochs, lr=settings.lr, t_values=settings.t_values,
                                seed=settings.seed)
        pairs.append({"mc": curve["mc"], "linear_mc": line["linear_mc"]})
    return {}, {**_mean({str(i): p for i, p in enumerate(pairs)}), "mc_pairs": len(pairs)}


_METRICS = {"eval": _eval, "hessian": _hessian, "cka": _cka, "mc": _mc}


def _healthy(models: dict) -> list[tuple[str, Any]]:
    return [(model_id, model) for model_id, model in sorted(models.items()) if model is not None]


def _loss(data):
    return lambda model, batch: data.loss(model, batch)[0]


def _mean(rows: dict[str, dict[str, float]]) -> dict[str, float | None]:
    """Seed mean of every numeric value; non-finite values make the mean undefined (None)."""
    names = sorted({name for values in rows.values() for name in values})
    mean: dict[str, float | None] = {}
    for name in names:
        values = [v[name] for v in rows.values() if isinstance(v.get(name), (int, float))]
        mean[name] = sum(values) / len(values) if values and all(map(math.isfinite, values)) else None
    return mean


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in values.items()}
