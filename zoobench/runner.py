"""Running a method over a zoo: make sure the zoo is complete, then one resumable unit per cell.

`run` first generates the models and annotations the zoo lacks (unless told not to), then runs the
method on every cell whose stored result is missing, failed or stale, in the same executor as
training, and returns the results table. A method that raises on one cell is recorded as that
cell's failure (with its traceback in the cell's file); the other cells go on.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zoobench.errors import UsageError
from zoobench.method import Method, make_config
from zoobench.plugins import discover
from zoobench.results import MethodResults, clean_values, digest
from zoobench.runtime import Runtime, runtime_for_units, runtime_of
from zoobench.spec import ZooSpec
from zoobench.store import Store

PHASE_METRICS = ("eval", "cka", "mc")  # what phase labels need; every method gets them


@dataclass
class RunReport:
    method: type[Method]
    config: Any
    results: MethodResults
    ran: int = 0  # units computed now
    current: int = 0  # units whose stored result was still valid
    failed: dict[str, str] = field(default_factory=dict)  # unit -> one-line error
    skipped: dict[str, str] = field(default_factory=dict)  # unit -> why the method was not run on it
    prepared: list[str] = field(default_factory=list)  # what was trained and annotated first
    seconds: float = 0.0

    def table(self):
        """The results (one row per unit) with each cell's phase (pandas)."""
        return results_table(self.results)


def run(method: str, spec: ZooSpec, store: Store | None = None, settings: dict[str, str] | None = None,
        plugins: Sequence[str] = (), epoch: int | None = None, generate_missing: bool = True,
        workers: int | None = None, data_root: str | Path | None = None, device: str | Runtime = "auto",
        show_progress: bool = True, executor=None) -> RunReport:
    """Run `method` on every cell of the zoo (resumable); returns what was done and where the results are.

    Every unit (training, annotation, the method's cells) runs on `device` (a torch device, "auto"
    for the GPU when there is one, or a `Runtime` for training) and on `executor` (default: a
    `LocalExecutor` for the device, with `workers` processes on CPU; or a `RayExecutor`)."""
    started = time.perf_counter()
    found = discover(plugins)
    method_class = found.get(method)
    config = make_config(method_class, settings)
    store = store or Store()
    zoo = store.zoo(spec)
    epoch = spec.metric_epoch if epoch is None else epoch
    if epoch not in spec.stored_epochs:
        raise UsageError(f"epoch {epoch} is not stored by {spec.name}; stored: {', '.join(map(str, spec.stored_epochs))}")
    if not generate_missing and not zoo.models():
        raise UsageError(f"zoo {spec.name} has no models in {zoo.path}; drop --no-generate or run "
                         f"`zoobench zoo generate {spec.name}`")
    from zoobench.annotations import checkpoint_hashes
    from zoobench.cells import cell_annotations, model_annotations
    from zoobench.executor import LocalExecutor, Unit

    executor = executor or LocalExecutor(workers, runtime_of(device).device)
    prepared = _complete(spec, store, method_class, epoch, executor, data_root, device, show_progress) \
        if generate_missing else []

    annotations, per_model = cell_annotations(zoo, epoch), model_annotations(zoo, epoch)
    hashes = checkpoint_hashes(zoo, epoch)
    results = MethodResults(zoo, method_class, config, epoch)
    report = RunReport(method_class, config, results, prepared=prepared)
    units = _units(method_class, config, hashes, annotations, per_model, report)
    todo = [(unit, inputs) for unit, inputs in units.items() if not results.is_current(unit, inputs)]
    report.current = len(units) - len(todo)
    if todo:
        results.start(found.origin(method))
        root = str(data_root) if data_root else None
        where = runtime_for_units(device, executor).device
        work = [Unit(unit, 1, (spec, str(zoo.path), method, found.plugins, settings or {}, epoch, unit, inputs,
                               annotations, per_model, root, where)) for unit, inputs in todo]
        with zoo.writing():
            for _, (unit, error) in executor.run(run_unit, work, f"{method} on {spec.name}", "units", show_progress):
                report.ran += 1
                if error:
                    report.failed[unit] = error
    report.seconds = time.perf_counter() - started
    return report


def _complete(spec, store, method_class, epoch, executor, data_root, device, show_progress) -> list[str]:
    """Train missing models and compute missing annotations (both resume and skip what is done);
    returns one line for each step that did something."""
    from zoobench.annotate import annotate
    from zoobench.errors import ZoobenchError
    from zoobench.generate import generate

    generation = generate(spec, store, data_root=data_root, device=device, show_progress=show_progress,
                          executor=executor)
    if generation.failed:
        model, error = next(iter(generation.failed.items()))
        raise ZoobenchError(f"{len(generation.failed)} models of {spec.name} failed to train (e.g. {model}: {error}); "
                            f"fix the cause and re-run to resume")
    metrics = tuple(dict.fromkeys((*PHASE_METRICS, *method_class.needs)))
    annotation = annotate(spec, store, metrics, epoch, None, data_root, runtime_of(device).device, show_progress,
                          executor)
    done = []
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


def run_unit(spec: ZooSpec, zoo_path: str, method: str, plugins: tuple[str, ...], settings: dict[str, str],
             epoch: int, unit: str, inputs: str, annotations: dict, per_model: dict, data_root: str | None,
             device: str) -> tuple[str, str]:
    """One unit of work (runs in a worker): the method on one cell (or split); returns (unit, error or "")."""
    import torch

    from zoobench.cells import open_cells
    from zoobench.method import Context, Zoo
    from zoobench.store import ZooStore

    method_class = discover(plugins).get(method)
    config = make_config(method_class, settings)
    zoo = ZooStore(Path(zoo_path), spec)
    results = MethodResults(zoo, method_class, config, epoch)
    cells = open_cells(zoo, epoch, device, data_root, annotations, per_model)
    target = Zoo(unit, spec, list(cells.values())) if method_class.scope == "zoo" else cells[unit]
    models = len(target.model_ids()) if method_class.scope == "zoo" else len(target.model_ids)
    started = time.perf_counter()
    torch.manual_seed(0)  # methods that draw random numbers without their own generator stay reproducible
    try:
        values = clean_values(method_class().run(target, Context(config, spec, device, Path(data_root) if data_root else None)),
                              method)
    except Exception as error:  # the method's bug or limit on this cell; the other cells go on
        message = f"{type(error).__name__}: {error}".replace("\n", " ")
        results.write(unit, inputs, "failed", {}, models, time.perf_counter() - started, message,
                      traceback.format_exc())
        return unit, message
    results.write(unit, inputs, "ok", values, models, time.perf_counter() - started)
    return unit, ""


def results_table(results: MethodResults):
    """A results table joined with each cell's phase (cells of zoo-scope methods have none)."""
    from zoobench.phases import phase_table

    table = results.table()
    if table.empty or results.method.scope == "zoo":
        return table
    phases = phase_table(results.zoo, results.epoch)
    labels = dict(zip(phases["cell_id"], phases["phase"])) if not phases.empty else {}
    return table.assign(phase=[labels.get(unit, "?") for unit in table["unit"]])


def load_results(method: str, spec: ZooSpec, store: Store | None = None, settings: dict[str, str] | None = None,
                 plugins: Sequence[str] = (), epoch: int | None = None):
    """The stored results of `method` with this config on the zoo, as a DataFrame (nothing is computed)."""
    method_class = discover(plugins).get(method)
    epoch = spec.metric_epoch if epoch is None else epoch
    zoo = (store or Store()).zoo(spec)
    return results_table(MethodResults(zoo, method_class, make_config(method_class, settings), epoch))
