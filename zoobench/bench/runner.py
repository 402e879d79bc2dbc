"""Running a method over a zoo: make sure the zoo is complete, then one resumable unit per cell.

`run` first checks the method's config (before any work), generates the models and annotations the
zoo lacks (unless told not to), then runs the method on every cell whose stored result is missing,
failed or stale, in the same executor as training, writes the headline's heatmap and returns what it
did. A method that raises on one cell is recorded as that cell's failure (with its traceback in the
cell's file); the other cells go on.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zoobench.bench.plugins import discover
from zoobench.bench.results import MethodResults, clean_values, digest
from zoobench.errors import UsageError, ZoobenchError
from zoobench.execution import Execution
from zoobench.landscape.registry import phase_metrics
from zoobench.method import Method, config_table, make_config
from zoobench.spec import ZooSpec
from zoobench.store import Store


@dataclass
class RunReport:
    method: type[Method]
    config: Any
    results: MethodResults
    ran: int = 0  # units computed now
    current: int = 0  # units whose stored result was still valid
    failed: dict[str, str] = field(default_factory=dict)  # unit -> one-line error
    skipped: dict[str, str] = field(default_factory=dict)  # unit -> why the method was not run on it
    damaged: dict[str, str] = field(default_factory=dict)  # model -> why it was left out (not retrained)
    prepared: list[str] = field(default_factory=list)  # what was trained and annotated first
    heatmap: Path | None = None  # the headline over the grid (cell-scope methods that report it)
    seconds: float = 0.0

    def table(self):
        """The results (one row per unit) with each cell's phase (pandas)."""
        return results_table(self.results)

    @property
    def title(self) -> str:
        """What the numbers are: zoo, fingerprint, method, version and config."""
        spec, method = self.results.zoo.spec, self.method
        config = ", ".join(f"{k}={v}" for k, v in config_table(self.config).items()) or "no options"
        return (f"{spec.name} ({spec.fingerprint}) | {method.name} v{method.version}, config "
                f"{self.results.config_hash}: {config}")


@dataclass(frozen=True)
class MethodUnit:
    """The method on one cell (or one unit of a zoo-scope method), with the inputs it was planned on."""

    label: str  # the cell, or the unit of a zoo-scope method
    inputs: str  # digest of the checkpoints and annotations the result depends on
    spec: ZooSpec
    zoo_path: str
    method: str
    plugins: tuple[str, ...]
    settings: dict[str, str]
    epoch: int
    annotations: dict[str, dict]  # cell id -> the cell's metrics and phase
    per_model: dict[str, dict]  # model id -> its per-model metrics
    data_root: str | None
    device: str
    size: int = 1

    def __call__(self) -> tuple[str, str]:
        return run_unit(self)


def run(method: str, spec: ZooSpec, store: Store | None = None, *, settings: dict[str, str] | None = None,
        plugins: Sequence[str] = (), epoch: int | None = None, generate_missing: bool = True,
        execution: Execution = Execution()) -> RunReport:
    """Run `method` on every cell of the zoo (resumable); returns what was done and where the results are.

    A bad config, epoch or plugin is a `UsageError` before any unit runs. With `generate_missing`,
    models and annotations the zoo lacks are made first; without it, damaged models are reported
    (`RunReport.damaged`) and their cells run with the seeds that are intact."""
    found = discover(plugins)
    method_class = found.get(method)
    config = make_config(method_class, settings)
    store = store or Store()
    zoo = store.zoo(spec)
    zoo.require_weights(f"method {method}")
    epoch = spec.metric_epoch if epoch is None else epoch
    if epoch not in spec.stored_epochs:
        raise UsageError(f"epoch {epoch} is not stored by {spec.name}; stored: {', '.join(map(str, spec.stored_epochs))}")
    if not generate_missing and not zoo.models():
        raise UsageError(f"zoo {spec.name} has no models in {zoo.path}; drop --no-generate or run "
                         f"`zoobench zoo generate {spec.name}`")
    from zoobench.bench.cells import cell_annotations, model_annotations

    results = MethodResults(zoo, method_class, config, epoch)
    report = RunReport(method_class, config, results)
    executor = execution.start()
    if generate_missing:
        report.prepared = _complete(spec, store, method_class, epoch, execution.with_executor(executor))
    else:
        report.damaged = zoo.damaged()
    started = time.perf_counter()  # the method's own time: generation and annotation report theirs
    annotations, per_model = cell_annotations(zoo, epoch), model_annotations(zoo, epoch)
    units = _units(method_class, config, zoo.checkpoint_hashes(epoch), annotations, per_model, report)
    todo = [(unit, inputs) for unit, inputs in units.items() if not results.is_current(unit, inputs)]
    report.current = len(units) - len(todo)
    if todo:
        results.start(found.origin(method))
        device = execution.unit_runtime(executor).device
        work = [MethodUnit(unit, inputs, spec, str(zoo.path), method, found.plugins, dict(settings or {}), epoch,
                           annotations, per_model, execution.root, device) for unit, inputs in todo]
        with zoo.writing():
            for _, (unit, error) in executor.run(work, f"{method} on {spec.name}", "units", execution.progress):
                report.ran += 1
                if error:
                    report.failed[unit] = error
    report.heatmap = _heatmap(report)
    report.seconds = time.perf_counter() - started
    return report


def _complete(spec: ZooSpec, store: Store, method_class: type[Method], epoch: int, execution: Execution) -> list[str]:
    """Train missing models and compute missing annotations (both resume and skip what is done);
    returns one line for each step that did something."""
    from zoobench.landscape.annotate import annotate
    from zoobench.train.generate import generate

    generation = generate(spec, store, execution=execution)
    if generation.failed:
        model, error = next(iter(generation.failed.items()))
        raise ZoobenchError(f"{len(generation.failed)} models of {spec.name} failed to train (e.g. {model}: {error}); "
                            f"fix the cause and re-run to resume")
    metrics = list(dict.fromkeys((*phase_metrics(), *method_class.needs)))
    annotation = annotate(spec, store, metrics=metrics, epoch=epoch, execution=execution)
    done = [f"retrained damaged model {model}: {problem}" for model, problem in generation.damaged.items()]
    if generation.trained or generation.diverged:
        done.append(f"trained {len(generation.trained) + len(generation.diverged)} models in "
                    f"{generation.seconds:.0f}s ({len(generation.diverged)} diverged)")
    done += [f"annotated {count} cells with {metric} in {annotation.seconds[metric]:.0f}s"
             for metric, count in annotation.done.items() if count]
    return done


def _units(method_class, config, hashes, annotations, per_model, report) -> dict[str, str]:
    """Unit id -> digest of its inputs; cells without a healthy model are skipped, with the reason."""
    if method_class.scope == "zoo":
        inputs = digest({"models": hashes, "cells": annotations, "per_model": per_model})
        return {unit: inputs for unit in method_class().units(config)}
    units = {}
    for cell_id, models in hashes.items():
        healthy = {m: h for m, h in models.items() if h not in ("diverged", "ok")}
        if not healthy:
            report.skipped[cell_id] = f"no healthy model at this epoch ({len(models)} diverged)"
            continue
        units[cell_id] = digest({"models": models, "cell": annotations.get(cell_id),
                                 "per_model": {m: per_model.get(m) for m in sorted(models)}})
    return units


def run_unit(unit: MethodUnit) -> tuple[str, str]:
    """One unit of work (runs in a worker): the method on one cell (or split); returns (unit, error or "")."""
    import torch

    from zoobench.bench.cells import open_cells
    from zoobench.method import Context, Zoo
    from zoobench.store import ZooStore

    method_class = discover(unit.plugins).get(unit.method)
    config = make_config(method_class, unit.settings)
    zoo = ZooStore(Path(unit.zoo_path), unit.spec)
    results = MethodResults(zoo, method_class, config, unit.epoch)
    cells = open_cells(zoo, unit.epoch, unit.device, unit.data_root, unit.annotations, unit.per_model)
    target = Zoo(unit.label, unit.spec, list(cells.values())) if method_class.scope == "zoo" else cells[unit.label]
    models = len(target.model_ids()) if method_class.scope == "zoo" else len(target.model_ids)
    context = Context(config, unit.spec, unit.device, Path(unit.data_root) if unit.data_root else None)
    started = time.perf_counter()
    torch.manual_seed(0)  # methods that draw random numbers without their own generator stay reproducible
    try:
        values = clean_values(method_class().run(target, context), unit.method)
    except Exception as error:  # the method's bug or limit on this cell; the other cells go on
        message = f"{type(error).__name__}: {error}".replace("\n", " ")
        results.write(unit.label, unit.inputs, "failed", {}, models, time.perf_counter() - started, message,
                      traceback.format_exc())
        return unit.label, message
    results.write(unit.label, unit.inputs, "ok", values, models, time.perf_counter() - started)
    return unit.label, ""


def _heatmap(report: RunReport) -> Path | None:
    """The headline over the grid, next to the results (None for zoo-scope methods, or when the method
    reported no headline on this zoo, e.g. accuracy on a task without classes)."""
    table = report.table()
    headline = report.method.headline
    if report.method.scope == "zoo" or table.empty or headline not in table:
        return None
    from zoobench.reports.figures import heatmap

    return heatmap(table, report.results.zoo.spec, headline, report.results.folder / f"heatmap-{headline}.png",
                   report.title, phases=dict(zip(table["unit"], table["phase"])))


def results_table(results: MethodResults):
    """A results table joined with each cell's phase (cells of zoo-scope methods have none)."""
    from zoobench.landscape.phases import phase_table

    table = results.table()
    if table.empty or results.method.scope == "zoo":
        return table
    phases = phase_table(results.zoo, results.epoch)
    labels = dict(zip(phases["cell_id"], phases["phase"])) if not phases.empty else {}
    return table.assign(phase=[labels.get(unit, "?") for unit in table["unit"]])


def load_results(method: str, spec: ZooSpec, store: Store | None = None, *, settings: dict[str, str] | None = None,
                 plugins: Sequence[str] = (), epoch: int | None = None):
    """The stored results of `method` with this config on the zoo, as a DataFrame (nothing is computed)."""
    method_class = discover(plugins).get(method)
    epoch = spec.metric_epoch if epoch is None else epoch
    zoo = (store or Store()).zoo(spec)
    return results_table(MethodResults(zoo, method_class, make_config(method_class, settings), epoch))
