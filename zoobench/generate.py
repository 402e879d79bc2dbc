"""Generating a zoo: plan which models are missing or damaged, then train only those.

Re-running is always safe: finished models are skipped, damaged ones (a file whose size no longer
matches its completion marker) are retrained, and what an interrupted run left in staging is
cleared first. Planning touches only JSON files, so a run with nothing to do never imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zoobench.grid import ModelKey, model_keys, model_spec
from zoobench.runtime import Runtime, runtime_for_units
from zoobench.spec import ZooSpec
from zoobench.store import Store


@dataclass
class GenerationReport:
    zoo: str
    path: Path
    requested: int  # models in the requested part of the grid
    skipped: int  # already finished
    trained: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)  # model id -> what was wrong before retraining
    failed: dict[str, str] = field(default_factory=dict)  # model id -> error
    seconds: float = 0.0


def generate(
    spec: ZooSpec,
    store: Store | None = None,
    loads: Sequence[Any] | None = None,
    temperatures: Sequence[Any] | None = None,
    seeds: Sequence[int] | None = None,
    workers: int | None = None,
    data_root: str | Path | None = None,
    device: str | Runtime = "auto",
    show_progress: bool = True,
    fused: bool = True,
    executor=None,
) -> GenerationReport:
    """Train every model of the (restricted) grid that the store lacks; the restriction never changes how.

    `device` is a torch device ("auto": the GPU when there is one) or a `Runtime` (precision, memory
    format, compilation). Units run on `executor` (default: a `LocalExecutor` for the device, with
    `workers` processes on CPU; or a `RayExecutor`)."""
    started = time.perf_counter()
    zoo = (store or Store()).zoo(spec)
    keys = model_keys(spec, loads, temperatures, seeds)
    with zoo.writing():
        problems = {key.id: zoo.problem(key.id) for key in keys}
        todo = [key for key in keys if problems[key.id] is not None]
        report = GenerationReport(spec.name, zoo.path, len(keys), len(keys) - len(todo),
                                  damaged={k: p for k, p in problems.items() if p not in (None, "not trained")})
        if todo:
            runtime = runtime_for_units(device, executor)
            _train(spec, zoo.path, todo, report, executor or _local(workers, runtime.device), data_root, runtime,
                   show_progress, fused)
    report.seconds = time.perf_counter() - started
    return report


def _local(workers: int | None, device: str):
    from zoobench.executor import LocalExecutor

    return LocalExecutor(workers, device)


def _train(spec, zoo_path, todo: list[ModelKey], report, executor, data_root, runtime: Runtime, show_progress,
           fused) -> None:
    from zoobench.executor import Unit
    from zoobench.fused import fusable
    from zoobench.training import check_available, train_unit

    check_available(spec, data_root)
    root = str(data_root) if data_root else None
    by_cell: dict[str, list[ModelKey]] = {}
    for key in todo:
        by_cell.setdefault(key.cell.id, []).append(key)
    groups = []
    for keys in by_cell.values():
        if fused and fusable(model_spec(spec, keys[0]), runtime.device) is None:  # the cell's seeds as one fused model
            groups.append(keys)
        else:  # one model per unit: the bar moves per model and an interrupt loses one model per worker
            groups += [[key] for key in keys]
    units = [Unit(keys[0].cell.id if len(keys) > 1 else keys[0].id, len(keys),
                  (spec, str(zoo_path), keys, root, runtime, fused)) for keys in groups]
    for _, outcome in executor.run(train_unit, units, f"training {spec.name}", show_progress=show_progress):
        for result in outcome:
            if result.status == "failed":
                report.failed[result.model_id] = result.error
            else:
                (report.diverged if result.status == "diverged" else report.trained).append(result.model_id)
