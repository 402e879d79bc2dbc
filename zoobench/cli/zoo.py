"""`zoobench zoo ...`: list, show, generate, annotate, verify, import and export zoos."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from zoobench.cli import render
from zoobench.cli.app import console, errors, resolve, shared_options, store, values, zoo_app
from zoobench.errors import UsageError, ZoobenchError
from zoobench.execution import Execution

ZooArgument = typer.Argument(..., help="Zoo name or spec file.")


@zoo_app.command("list")
@shared_options()
def zoo_list(*, home: Optional[Path]) -> None:
    """Known zoo specs, and how many of each zoo's models the store holds."""
    the_store = store(home)
    shown = render.table("zoo", "dataset", "model", "grid", "models", "fingerprint")
    stored = []
    for entry in the_store.catalogue():
        spec = entry.spec
        name = spec.name if entry.builtin else f"{spec.name} *"
        shown.add_row(name, spec.data.dataset, spec.model.architecture, entry.grid,
                      f"{entry.models}/{entry.grid_models}", spec.fingerprint)
        if not entry.builtin:
            stored.append(f"* {spec.name}: stored only, from {spec.source}")
    console.print(shown)
    for text in [*stored, f"grid: loads x temperatures x seeds; store: {the_store.home}"]:
        render.line(text)


@zoo_app.command("show")
@shared_options()
def zoo_show(
    zoo: str = ZooArgument,
    why: bool = typer.Option(False, "--why", help="Also list every cell's phase with the values and thresholds behind it."),
    *, home: Optional[Path],
) -> None:
    """The spec's recipe, its grid, which models of each cell are finished, and the phase map."""
    the_store, spec = resolve(zoo, home)
    zoo_store = the_store.zoo(spec)
    t, g = spec.training, spec.grid
    console.print(f"[bold]{spec.name}[/bold]  {spec.description}", soft_wrap=True)
    render.line(f"spec: {spec.source}   fingerprint: {spec.fingerprint}   store: {zoo_store.path}")
    render.line(f"data: {spec.data.dataset} {spec.data.options or ''}   model: {spec.model.architecture} "
                f"{spec.model.options}")
    render.line(f"training: {t.optimizer} lr {t.lr:g}, momentum {t.momentum:g}, weight decay {t.weight_decay:g}, "
                f"{t.schedule}, {t.epochs} epochs, init {t.init}; checkpoints at {list(spec.stored_epochs)}; "
                f"metrics at epoch {spec.metric_epoch}")
    render.line(f"grid: load = {g.load.field}, temperature = {g.temperature.field}, seeds {list(g.seeds)}")
    texts = {}
    for row in zoo_store.cells().to_dict("records"):
        done, diverged, seeds = row["finished"], row["diverged"], row["seeds"]
        style = "red" if diverged else "green" if done == seeds else "yellow" if done else "dim"
        texts[row["cell_id"]] = (f"{done}/{seeds}" + (f" ({diverged}d)" if diverged else ""), style)
    render.show("finished models per cell (d: diverged):", render.grid(spec, texts))
    for model_id, problem in zoo_store.damaged().items():
        console.print(f"[yellow]damaged: {model_id}: {problem}", soft_wrap=True, highlight=False)
    render.phases(zoo_store, why)


@zoo_app.command("generate")
@shared_options(training=True)
def zoo_generate(
    zoo: str = ZooArgument,
    loads: Optional[str] = typer.Option(None, "--widths", "--loads", help="Only these load values, e.g. 4,8,16."),
    temperatures: Optional[str] = typer.Option(None, "--batch-sizes", "--temperatures",
                                               help="Only these temperature values, e.g. 32,64."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Only these seeds, e.g. 0,1."),
    fused: bool = typer.Option(True, "--fused/--no-fused", help="Train a cell's seeds as one fused network "
                               "where the zoo allows it (same result per seed, faster)."),
    *, home: Optional[Path], execution: Execution,
) -> None:
    """Train the models the store lacks; re-running resumes, and the filters choose cells, not recipes."""
    from zoobench.train.generate import generate

    the_store, spec = resolve(zoo, home)
    report = generate(spec, the_store, loads=values(loads), temperatures=values(temperatures), seeds=values(seeds),
                      fused=fused, execution=execution)
    for model_id, problem in report.damaged.items():
        console.print(f"[yellow]retrained damaged model {model_id}: {problem}", soft_wrap=True, highlight=False)
    trained = len(report.trained) + len(report.diverged)
    if trained == 0 and not report.failed:
        render.line(f"nothing to do: all {report.requested} requested models of {spec.name} are in {report.path}")
        return
    if trained:
        render.line(f"trained {trained} models of {spec.name} in {report.seconds:.0f}s ({len(report.diverged)} "
                    f"diverged, recorded as results); {report.skipped} were already done; store: {report.path}")
    if report.failed:
        messages = Counter(report.failed.values())
        first, count = messages.most_common(1)[0]
        others = f" ({len(messages) - 1} other errors; see the store)" if len(messages) > 1 else ""
        raise ZoobenchError(f"{len(report.failed)} of {trained + len(report.failed)} models failed, {count} with: "
                            f"{first}{others}; fix the cause and re-run to resume")


@zoo_app.command("annotate")
@shared_options()
def zoo_annotate(
    zoo: str = ZooArgument,
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metrics (default: every "
                                          "registered one: eval, cka, hessian, mc, ...)."),
    *, epoch: Optional[int], home: Optional[Path], execution: Execution,
) -> None:
    """Compute loss-landscape metrics per cell (resumable), then print the phase map."""
    from zoobench.landscape.annotate import annotate

    the_store, spec = resolve(zoo, home)
    report = annotate(spec, the_store, metrics=values(metrics), epoch=epoch, execution=execution)
    for metric, done in report.done.items():
        console.print(f"{metric}: annotated {done} cells in {report.seconds[metric]:.0f}s, "
                      f"{report.current[metric]} were already current")
    render.phases(the_store.zoo(spec))


@zoo_app.command("verify")
@shared_options()
def zoo_verify(zoo: str = ZooArgument, *, home: Optional[Path]) -> None:
    """Check every stored model against the sizes and SHA-256 hashes in its completion marker."""
    the_store, spec = resolve(zoo, home)
    zoo_store = the_store.zoo(spec)
    problems = zoo_store.verify()
    for model_id, problem in problems.items():
        errors.print(f"error: model {model_id}: {problem}", markup=False, highlight=False, soft_wrap=True)
    if problems:
        errors.print(f"error: {len(problems)} damaged models in {zoo_store.path}; "
                     f"`zoobench zoo generate {zoo}` retrains them", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"all {len(zoo_store.models())} models of {zoo_store.spec.name} are intact")


@zoo_app.command("import")
@shared_options()
def zoo_import(
    path: Path = typer.Argument(..., help="Folder of trial folders in the published Phase Transition Model Zoo layout."),
    name: str = typer.Option(..., "--name", help="Name of the zoo in the store."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset, when the params do not tell it."),
    *, home: Optional[Path],
) -> None:
    """Import a published zoo; checkpoints are read with weights_only=True, bad trials are skipped."""
    from zoobench.store.ptmz import import_zoo

    spec, report = import_zoo(path, name, store(home), dataset)
    for trial, reason in report.skipped.items():
        errors.print(f"skipped {trial}: {reason}", markup=False, highlight=False, soft_wrap=True)
    render.line(f"imported {len(report.imported)} models as {spec.name} ({spec.fingerprint}); "
                f"{len(report.already)} were already there; {len(report.skipped)} skipped; store: {report.path}")
    if report.skipped:
        raise typer.Exit(1)


@zoo_app.command("export")
@shared_options()
def zoo_export(
    zoo: str = ZooArgument,
    path: Path = typer.Argument(..., help="Folder to write."),
    format: str = typer.Option("ptmz", "--format", help="Only 'ptmz': the published Phase Transition Model Zoo layout."),
    *, home: Optional[Path],
) -> None:
    """Write a zoo's finished models in the published layout (imports back losslessly)."""
    from zoobench.store.ptmz import export_zoo

    if format != "ptmz":
        raise UsageError(f"unknown export format '{format}'; valid: ptmz")
    the_store, spec = resolve(zoo, home)
    zoo_store = the_store.zoo(spec)
    written = export_zoo(zoo_store, path)
    render.line(f"exported {written} models of {zoo_store.spec.name} to {path}")
