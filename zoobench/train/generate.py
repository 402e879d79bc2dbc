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

from zoobench.data import check_files
from zoobench.execution import Execution, Runtime
from zoobench.models import check_builder
from zoobench.spec import ZooSpec
from zoobench.spec.grid import ModelKey, model_keys, model_spec
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


@dataclass(frozen=True)
class TrainUnit:
    """Some seeds of one cell: trained fused when the zoo allows it, else one by one."""

    spec: ZooSpec
    zoo_path: str
    keys: tuple[ModelKey, ...]
    data_root: str | None
    runtime: Runtime
    fused: bool

    @property
    def label(self) -> str:
        return self.keys[0].cell.id if len(self.keys) > 1 else self.keys[0].id

    @property
    def size(self) -> int:
        return len(self.keys)

    def __call__(self) -> list:
        from zoobench.store import ZooStore
        from zoobench.train.loop import train_models

        zoo = ZooStore(Path(self.zoo_path), self.spec)
        return train_models(self.spec, list(self.keys), zoo, self.data_root, self.runtime, self.fused)


def generate(spec: ZooSpec, store: Store | None = None, *, loads: Sequence[Any] | None = None,
             temperatures: Sequence[Any] | None = None, seeds: Sequence[int] | None = None, fused: bool = True,
             execution: Execution = Execution()) -> GenerationReport:
    """Train every model of the (restricted) grid that the store lacks; the restriction never changes how.

    `fused` trains a cell's seeds as one network where the zoo allows it (the same result per seed,
    faster); `execution` says where units run and with which runtime."""
    started = time.perf_counter()
    zoo = (store or Store()).zoo(spec)
    keys = model_keys(spec, loads, temperatures, seeds)
    with zoo.writing():
        problems = {key.id: zoo.problem(key.id) for key in keys}
        todo = [key for key in keys if problems[key.id] is not None]
        report = GenerationReport(spec.name, zoo.path, len(keys), len(keys) - len(todo),
                                  damaged={k: p for k, p in problems.items() if p not in (None, "not trained")})
        if todo:
            _train(spec, str(zoo.path), todo, report, fused, execution)
    report.seconds = time.perf_counter() - started
    return report


def _train(spec: ZooSpec, zoo_path: str, todo: list[ModelKey], report: GenerationReport, fused: bool,
           execution: Execution) -> None:
    from zoobench.train.fused import fusable

    check_builder(spec.model.architecture)
    check_files(spec.data.dataset, spec.data.options, execution.data_root)
    executor = execution.start()
    runtime = execution.unit_runtime(executor)
    by_cell: dict[str, list[ModelKey]] = {}
    for key in todo:
        by_cell.setdefault(key.cell.id, []).append(key)
    groups = []
    for keys in by_cell.values():
        if fused and fusable(model_spec(spec, keys[0]), runtime.device) is None:  # the cell's seeds as one fused model
            groups.append(keys)
        else:  # one model per unit: the bar moves per model and an interrupt loses one model per worker
            groups += [[key] for key in keys]
    units = [TrainUnit(spec, zoo_path, tuple(keys), execution.root, runtime, fused) for keys in groups]
    for _, outcomes in executor.run(units, f"training {spec.name}", show_progress=execution.progress):
        for result in outcomes:
            if result.status == "failed":
                report.failed[result.model_id] = result.error
            else:
                (report.diverged if result.status == "diverged" else report.trained).append(result.model_id)
