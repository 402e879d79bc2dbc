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
    from zoobench.store.reference import CITATION, SUFFIX, shipped

    references = render.table("reference zoo (metrics only)", "like", "file")
    for name, path in shipped().items():
        references.add_row(name, name.removesuffix(SUFFIX), path.name)
    render.show(f"published reference zoos, no weights (zoo show / phases / compare-reference; {CITATION}):",
                references)


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


PHASE_METRICS = {"train_loss": "train loss", "test_acc": "test acc", "cka": "CKA", "mc": "mc",
                 "hessian_log_trace": "log Htr"}


@zoo_app.command("phases")
@shared_options()
def zoo_phases(
    zoo: str = ZooArgument,
    format: str = typer.Option("table", "--format", help="table (for people), csv or json (for programs)."),
    source: Optional[str] = typer.Option(None, "--source", help="computed or published annotations (default: "
                                         "computed where the zoo has any at the epoch, else published)."),
    *, epoch: Optional[int], home: Optional[Path],
) -> None:
    """Every cell's phase, the reason for it and its metrics (seed means), with the rule's thresholds."""
    import json
    import math

    from zoobench.landscape.annotations import cell_table
    from zoobench.landscape.phases import classify
    from zoobench.landscape.stability import seed_stability

    if format not in ("table", "csv", "json"):
        raise UsageError(f"unknown format '{format}'; valid: table, csv, json")
    the_store, spec = resolve(zoo, home)
    zoo_store = the_store.zoo(spec)
    epoch = spec.metric_epoch if epoch is None else epoch
    labelled, rule = classify(spec, cell_table(zoo_store, epoch, source))
    if labelled.empty:
        raise UsageError(f"zoo {spec.name} has no annotations at epoch {epoch}: `zoobench zoo annotate {zoo}` "
                         f"computes them")
    stability = seed_stability(zoo_store, labelled, rule, epoch)
    labelled = labelled.assign(seed_stability=labelled["cell_id"].map(stability))
    shown = ["cell_id", "load", "temperature", "models", "phase", "reason", "seed_stability",
             *(m for m in PHASE_METRICS if m in labelled), "source", "cka_estimator"]
    cells = labelled[shown]
    if format == "csv":
        print(cells.to_csv(index=False), end="")
        return
    if format == "json":
        records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                   for row in cells.to_dict("records")]
        print(json.dumps({"zoo": spec.name, "fingerprint": spec.fingerprint, "epoch": epoch, "rule": rule.summary(),
                          "thresholds": {"train_loss": rule.train_loss, "mc": rule.mc, "cka": rule.cka},
                          "cells": records}, indent=1))
        return
    metrics = [m for m in PHASE_METRICS if m in labelled]
    out = render.table(spec.grid.load.short, spec.grid.temperature.short, "phase", "stable",
                       *(PHASE_METRICS[m] for m in metrics))
    for row in cells.to_dict("records"):
        out.add_row(str(row["load"]), str(row["temperature"]),
                    f"[{render.PHASE_STYLE[row['phase']]}]{row['phase']}", render.number(row["seed_stability"]),
                    *(render.number(row[m]) for m in metrics))
    render.show(f"{spec.name}, epoch {epoch}: phase and seed-mean metrics per cell", out)
    render.line(f"rule: {rule.summary()}")
    render.line(_stability_summary(cells))
    render.line(render.provenance(labelled, epoch))
    for row in cells.to_dict("records"):
        render.line(f"{row['cell_id']}: {row['phase']}: {row['reason']}")


def _stability_summary(cells) -> str:
    """One line: how many labels survive leaving out any one seed, per phase."""
    from zoobench.landscape.phases import PHASES

    meaning = "stable: the share of a cell's labels, with each seed left out in turn, that keep its phase"
    known = cells.dropna(subset=["seed_stability"])
    if known.empty:
        why = ("published metrics have no per-pair values" if (cells["source"] == "published").all() else
               "it needs per-pair mc and CKA: `zoobench zoo annotate` again with this version")
        return f"{meaning}; none here ({why})"
    kept = known[known["seed_stability"] == 1]
    per_phase = ", ".join(f"{phase} {int((kept['phase'] == phase).sum())}/{int((known['phase'] == phase).sum())}"
                          for phase in PHASES if (known["phase"] == phase).any())
    return f"{meaning}; {len(kept)} of {len(known)} cells keep it whichever seed is left out ({per_phase})"


@zoo_app.command("compare-reference")
@shared_options()
def zoo_compare_reference(
    zoo: str = ZooArgument,
    reference: str = typer.Argument(..., help="The reference zoo, e.g. cifar10_r18@ptmz (the paper's metrics)."),
    reference_epoch: Optional[int] = typer.Option(None, "--reference-epoch", help="Epoch of the reference "
                                                  "(default: its metric epoch)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the figure and tables (default: the zoo's "
                                       "comparisons/ folder in the store)."),
    *, epoch: Optional[int], home: Optional[Path],
) -> None:
    """A zoo's metrics and phases against a reference's: rank correlation and median ratio per metric over
    the cells both have, and the phase agreement."""
    from zoobench.reports.reference import compare_reference

    the_store, spec = resolve(zoo, home)
    reference_spec = the_store.resolve(reference)
    result = compare_reference(the_store.zoo(spec), the_store.zoo(reference_spec), epoch, reference_epoch, out)
    shown = render.table("metric", "cells", "Spearman rho", "median ratio")
    for row in result.metrics.to_dict("records"):
        shown.add_row(row["metric"], str(row["cells"]), render.number(row["spearman"]),
                      render.number(row["median_ratio"]))
    render.show(f"{result.zoo} (epoch {result.epochs[0]}) vs {result.reference} (epoch {result.epochs[1]}), "
                f"per metric over the cells both have (ratio: {result.zoo} / {result.reference}):", shown)
    cells = result.cells.to_dict("records")
    texts = {row["cell_id"]: (row["phase"] + ("" if row["agree"] else "*"), render.PHASE_STYLE[row["phase"]])
             for row in cells}
    render.show(f"{result.zoo}'s phase per cell (*: the reference's differs): {result.agreement:.0%} agree",
                render.grid(spec, texts))
    for row in (r for r in cells if not r["agree"]):
        render.line(f"{row['cell_id']}: {row['phase']} here, {row['reference_phase']} in {result.reference}")
    render.line(f"CKA: {result.zoo}: {result.estimators[0]}; {result.reference}: {result.estimators[1]}")
    if not result.same_estimator:
        render.line("the CKA estimators differ, so CKA values are not comparable (their ranks are); set "
                    "[annotation.cka] estimator = \"paper\" in the zoo's spec to compute the paper's")
    for name, path in result.files.items():
        render.line(f"{name}: {path}")


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
    path: Path = typer.Argument(..., help="A published summary metrics CSV, or a folder of trial folders in the "
                                "published Phase Transition Model Zoo layout."),
    name: str = typer.Option(..., "--name", help="Name of the zoo in the store."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Trial folders: the dataset, when the params do "
                                          "not tell it."),
    like: Optional[str] = typer.Option(None, "--like", help="Summary CSV: the built-in zoo it belongs to (default: "
                                       "from the file name, e.g. cifar10_resnet18_summary.csv -> cifar10_r18)."),
    *, home: Optional[Path],
) -> None:
    """Import a published zoo: trial folders (checkpoints read with weights_only=True, bad trials skipped)
    or a summary metrics CSV (a zoo of published metrics, no weights; each fault in the file reported)."""
    if path.suffix == ".csv":
        from zoobench.store.reference import import_summary

        spec, summary = import_summary(path, name, store(home), like)
        for fault in summary.faults:
            errors.print(f"fault: {fault}", markup=False, highlight=False, soft_wrap=True)
        render.line(f"imported {summary.models} models of published metrics as {spec.name} ({spec.fingerprint}), "
                    f"{summary.added} new; annotated epochs {summary.epochs}, metric epoch {spec.metric_epoch}; "
                    f"no weights; store: {summary.path}")
        return
    from zoobench.store.ptmz import import_zoo

    spec, report = import_zoo(path, name, store(home), dataset)
    for trial, reason in report.skipped.items():
        errors.print(f"skipped {trial}: {reason}", markup=False, highlight=False, soft_wrap=True)
    render.line(f"imported {len(report.imported)} models as {spec.name} ({spec.fingerprint}); "
                f"{len(report.already)} were already there; {len(report.skipped)} skipped; store: {report.path}")
    if report.annotated:
        render.line(f"published annotations kept at epochs {report.annotated}")
    if report.skipped:
        raise typer.Exit(1)


@zoo_app.command("export")
@shared_options()
def zoo_export(
    zoo: str = ZooArgument,
    path: Path = typer.Argument(..., help="Folder to write."),
    format: str = typer.Option("ptmz", "--format", help="ptmz: the published Phase Transition Model Zoo layout "
                               "(imports back losslessly); wsl: flat weight matrices, layouts, metrics and splits "
                               "for weight-space learning; unterthiner: the Small CNN Zoo layout NFN reads."),
    epochs: Optional[str] = typer.Option(None, "--epochs", help="wsl, unterthiner: the checkpoint epochs to "
                                         "export, e.g. 11,12,13,14,15, or 'all' (default: the metric epoch)."),
    *, home: Optional[Path],
) -> None:
    """Write a zoo's finished models to a folder in another layout (resumable: re-running completes it)."""
    the_store, spec = resolve(zoo, home)
    zoo_store = the_store.zoo(spec)
    if format == "ptmz":
        from zoobench.store.ptmz import export_zoo

        if epochs is not None:
            raise UsageError("--epochs applies to --format wsl and unterthiner; ptmz exports every stored epoch")
        written = export_zoo(zoo_store, path)
        render.line(f"exported {written} models of {zoo_store.spec.name} to {path}")
        return
    from zoobench.wsl.export import export_weights

    report = export_weights(zoo_store, path, format, _epochs(epochs, spec))
    current = len(report.groups) - len(report.written)
    render.line(f"exported {report.rows} weight rows of {spec.name} in format {format} to {path}: "
                f"{len(report.groups)} shape groups ({', '.join(report.groups)})"
                + (f", {current} of them already current" if current else "") + f"; how to read it: "
                f"{path / 'README.md'}")
    for model_id, why in report.left_out.items():
        render.line(f"left out {model_id}: {why}")


def _epochs(text: Optional[str], spec) -> Optional[list[int]]:
    if text is None or text == "all":
        return None if text is None else list(spec.stored_epochs)
    try:
        return [int(v) for v in values(text)]
    except ValueError:
        raise UsageError(f"--epochs expects epochs such as 11,12,15 or 'all', got '{text}'") from None
