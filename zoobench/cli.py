"""The ``zoobench`` command: parses arguments, calls one API function, prints the result.

Heavy imports (torch) happen inside the API functions that need them, so listing and showing zoos
starts in well under a second. Every user error ends as one line on stderr with exit code 2 (bad
input) or 1 (failure), never a traceback.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from zoobench.errors import ZoobenchError

app = typer.Typer(help="Benchmark harness for downstream methods on phase zoos.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False, add_completion=False)
zoo_app = typer.Typer(help="List, inspect, generate and verify zoos.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
methods_app = typer.Typer(help="Method plugins: built-in, installed and local.", no_args_is_help=True)
app.add_typer(methods_app, name="methods")
data_app = typer.Typer(help="Datasets: where they are expected and how to get them.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
errors = Console(stderr=True)

HomeOption = typer.Option(None, "--home", envvar="ZOOBENCH_HOME", help="Store folder (default: ~/.cache/zoobench).")
PluginOption = typer.Option(None, "--plugin", help="Method plugin module or .py file (repeatable); "
                            "ZOOBENCH_PLUGINS adds more, separated by ':'.")


def _store(home: Optional[Path]):
    from zoobench.store import Store

    return Store(home)


def _values(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [v for v in text.replace(" ", "").split(",") if v]


@zoo_app.command("list")
def zoo_list(home: Optional[Path] = HomeOption) -> None:
    """Known zoo specs, and how many of each zoo's models the store holds."""
    from zoobench.spec import list_specs

    store = _store(home)
    table = Table("zoo", "dataset", "architecture", "grid", "models", "fingerprint")
    builtin = set()
    for spec in list_specs():
        builtin.add((spec.name, spec.fingerprint))
        table.add_row(spec.name, spec.data.dataset, spec.model.architecture, _grid_size(spec),
                      _done(store.zoo(spec)), spec.fingerprint)
    for zoo in store.zoos():
        if (zoo.spec.name, zoo.spec.fingerprint) not in builtin:
            table.add_row(f"{zoo.spec.name} [dim](stored, from {zoo.spec.source})", zoo.spec.data.dataset,
                          zoo.spec.model.architecture, _grid_size(zoo.spec), _done(zoo), zoo.spec.fingerprint)
    console.print(table)
    console.print(f"store: {store.home}")


def _grid_size(spec) -> str:
    g = spec.grid
    return f"{len(g.load.values)} x {len(g.temperature.values)} x {len(g.seeds)}"


def _done(zoo) -> str:
    g = zoo.spec.grid
    return f"{len(zoo.models())}/{len(g.load.values) * len(g.temperature.values) * len(g.seeds)}"


@zoo_app.command("show")
def zoo_show(
    zoo: str = typer.Argument(..., help="Zoo name or spec file."),
    why: bool = typer.Option(False, "--why", help="Also list every cell's phase with the values and thresholds behind it."),
    home: Optional[Path] = HomeOption,
) -> None:
    """The spec's recipe, its grid, which models of each cell are finished, and the phase map."""
    store = _store(home)
    spec = store.resolve(zoo)
    zoo_store = store.zoo(spec)
    t, g = spec.training, spec.grid
    console.print(f"[bold]{spec.name}[/bold]  {spec.description}")
    console.print(f"spec: {spec.source}   fingerprint: {spec.fingerprint}   store: {zoo_store.path}")
    console.print(f"data: {spec.data.dataset} {spec.data.options or ''}   model: {spec.model.architecture} "
                  f"{spec.model.options}")
    console.print(f"training: {t.optimizer} lr {t.lr:g}, momentum {t.momentum:g}, weight decay {t.weight_decay:g}, "
                  f"{t.schedule}, {t.epochs} epochs, init {t.init}; checkpoints at {list(spec.stored_epochs)}; "
                  f"metrics at epoch {spec.metric_epoch}")
    console.print(f"grid: load = {g.load.field}, temperature = {g.temperature.field}, seeds {list(g.seeds)}")
    status = zoo_store.cells().set_index("cell_id")
    texts = {}
    for cell_id, row in status.iterrows():
        done, diverged, seeds = row["finished"], row["diverged"], row["seeds"]
        style = "red" if diverged else "green" if done == seeds else "yellow" if done else "dim"
        texts[cell_id] = (f"{done}/{seeds}" + (f" ({diverged} div)" if diverged else ""), style)
    console.print(_grid(spec, "finished models per cell (hot at the top)", texts))
    _print_phases(zoo_store, why)


PHASE_STYLE = {"I": "red", "II": "magenta", "III": "yellow", "IV-A": "cyan", "IV-B": "green", "diverged": "bold red",
               "?": "dim"}


def _grid(spec, title: str, texts: dict[str, tuple[str, str]]) -> Table:
    """A load x temperature grid of cell texts, hottest temperature first, as in the paper's figures."""
    from zoobench.grid import cell, hot_first

    g = spec.grid
    table = Table(f"{g.temperature.short} \\ {g.load.short}", *map(str, g.load.values), title=title)
    for temperature in hot_first(g.temperature):
        row = []
        for load in g.load.values:
            text, style = texts.get(cell(spec, load, temperature).id, ("-", "dim"))
            row.append(f"[{style}]{text}")
        table.add_row(f"{temperature:g}", *row)
    return table


def _print_phases(zoo_store, why: bool = False) -> None:
    """The phase map and per-metric summaries, when the zoo has annotations; with `why`, each label's reason."""
    from zoobench.phases import loss_threshold, phase_table

    table = phase_table(zoo_store)
    if table.empty:
        console.print("no annotations yet: `zoobench zoo annotate` computes them")
        return
    spec = zoo_store.spec
    texts = {row["cell_id"]: (row["phase"], PHASE_STYLE[row["phase"]]) for row in table.to_dict("records")}
    console.print(_grid(spec, "phases", texts))
    threshold, how = loss_threshold(spec, table["train_loss"].tolist() if "train_loss" in table else [])
    console.print(f"thresholds: train loss {threshold if threshold is None else f'{threshold:.3g}'} ({how}); "
                  f"|mc| <= {spec.phases.mc:g} is near zero; CKA >= {spec.phases.cka:g} is large")
    summary = Table("metric", "cells", "mean", "min", "max", title="per-metric summary over cells")
    for column in ["train_loss", "test_acc", "gap", "hessian_top_eigenvalue", "hessian_trace", "hessian_log_trace",
                   "cka", "mc", "linear_mc", "test_rel_l2"]:
        if column in table:
            values = table[column].dropna()
            if len(values):
                summary.add_row(column, str(len(values)), f"{values.mean():.4g}", f"{values.min():.4g}",
                                f"{values.max():.4g}")
    console.print(summary)
    if why:
        for row in table.to_dict("records"):
            console.print(f"{row['cell_id']}: {row['phase']}: {row['reason']}", markup=False, highlight=False)


@zoo_app.command("generate")
def zoo_generate(
    zoo: str = typer.Argument(..., help="Zoo name or spec file."),
    home: Optional[Path] = HomeOption,
    loads: Optional[str] = typer.Option(None, "--widths", "--loads", help="Only these load values, e.g. 4,8,16."),
    temperatures: Optional[str] = typer.Option(None, "--batch-sizes", "--temperatures",
                                               help="Only these temperature values, e.g. 32,64."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Only these seeds, e.g. 0,1."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: one per core)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="ZOOBENCH_DATA", help="Dataset folder."),
) -> None:
    """Train the models the store lacks; re-running resumes, and the filters choose cells, not recipes."""
    from zoobench.generate import generate

    store = _store(home)
    spec = store.resolve(zoo)
    try:
        report = generate(spec, store, _values(loads), _values(temperatures), _values(seeds), workers, data_root)
    except KeyboardInterrupt:
        errors.print("interrupted: finished models are kept; run the same command again to resume")
        raise typer.Exit(130) from None
    for model_id, problem in report.damaged.items():
        console.print(f"[yellow]retrained damaged model {model_id}: {problem}")
    trained = len(report.trained) + len(report.diverged)
    if trained == 0 and not report.failed:
        console.print(f"nothing to do: all {report.requested} requested models of {spec.name} are in {report.path}")
        return
    if trained:
        console.print(f"trained {trained} models of {spec.name} in {report.seconds:.0f}s "
                      f"({len(report.diverged)} diverged, recorded as results); {report.skipped} were already "
                      f"done; store: {report.path}")
    if report.failed:
        messages = Counter(report.failed.values())
        first, count = messages.most_common(1)[0]
        others = f" ({len(messages) - 1} other errors; see the store)" if len(messages) > 1 else ""
        raise ZoobenchError(f"{len(report.failed)} of {trained + len(report.failed)} models failed, {count} with: "
                            f"{first}{others}; fix the cause and re-run to resume")


@zoo_app.command("annotate")
def zoo_annotate(
    zoo: str = typer.Argument(..., help="Zoo name or spec file."),
    metrics: str = typer.Option("eval,hessian,cka,mc", "--metrics", help="Comma-separated: eval, hessian, cka, mc."),
    epoch: Optional[int] = typer.Option(None, "--epoch", help="Stored epoch to annotate (default: the spec's)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: one per core)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="ZOOBENCH_DATA", help="Dataset folder."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Compute loss-landscape metrics per cell (resumable), then print the phase map."""
    from zoobench.annotate import annotate

    store = _store(home)
    spec = store.resolve(zoo)
    try:
        report = annotate(spec, store, _values(metrics) or [], epoch, workers, data_root)
    except KeyboardInterrupt:
        errors.print("interrupted: finished cells are kept; run the same command again to resume")
        raise typer.Exit(130) from None
    for metric, done in report.done.items():
        console.print(f"{metric}: annotated {done} cells in {report.seconds[metric]:.0f}s, "
                      f"{report.current[metric]} were already current")
    _print_phases(store.zoo(spec))


@zoo_app.command("verify")
def zoo_verify(zoo: str = typer.Argument(..., help="Zoo name or spec file."), home: Optional[Path] = HomeOption) -> None:
    """Check every stored model against the sizes and SHA-256 hashes in its completion marker."""
    store = _store(home)
    zoo_store = store.zoo(store.resolve(zoo))
    problems = zoo_store.verify()
    for model_id, problem in problems.items():
        errors.print(f"error: model {model_id}: {problem}")
    if problems:
        errors.print(f"error: {len(problems)} damaged models in {zoo_store.path}; "
                     f"`zoobench zoo generate {zoo}` retrains them")
        raise typer.Exit(1)
    console.print(f"all {len(zoo_store.models())} models of {zoo_store.spec.name} are intact")


@zoo_app.command("import")
def zoo_import(
    path: Path = typer.Argument(..., help="Folder of trial folders in the published Phase Transition Model Zoo layout."),
    name: str = typer.Option(..., "--name", help="Name of the zoo in the store."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset, when the params do not tell it."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Import a published zoo; checkpoints are read with weights_only=True, bad trials are skipped."""
    from zoobench.ptmz import import_zoo

    spec, report = import_zoo(path, name, _store(home), dataset)
    for trial, reason in report.skipped.items():
        errors.print(f"skipped {trial}: {reason}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"imported {len(report.imported)} models as {spec.name} ({spec.fingerprint}); "
                  f"{len(report.already)} were already there; {len(report.skipped)} skipped; store: {report.path}")
    if report.skipped:
        raise typer.Exit(1)


@zoo_app.command("export")
def zoo_export(
    zoo: str = typer.Argument(..., help="Zoo name or spec file."),
    path: Path = typer.Argument(..., help="Folder to write."),
    format: str = typer.Option("ptmz", "--format", help="Only 'ptmz': the published Phase Transition Model Zoo layout."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Write a zoo's finished models in the published layout (imports back losslessly)."""
    from zoobench.errors import UsageError
    from zoobench.ptmz import export_zoo

    if format != "ptmz":
        raise UsageError(f"unknown export format '{format}'; valid: ptmz")
    store = _store(home)
    zoo_store = store.zoo(store.resolve(zoo))
    written = export_zoo(zoo_store, path)
    console.print(f"exported {written} models of {zoo_store.spec.name} to {path}")


@methods_app.command("list")
def methods_list(plugins: Optional[list[str]] = PluginOption) -> None:
    """Every method found: name, version, headline metric, scope and where it comes from."""
    from zoobench.plugins import discover

    found = discover(plugins or [])
    table = Table("method", "version", "headline", "scope", "origin")
    for name in found.names():
        method = found.get(name)
        direction = "higher is better" if method.higher_is_better else "lower is better"
        table.add_row(name, method.version, f"{method.headline} ({direction})", method.scope, found.origin(name))
    console.print(table)
    for broken in found.broken:
        errors.print(f"warning: plugin {broken.origin} skipped: {broken.error}", markup=False, highlight=False,
                     soft_wrap=True)


@app.command("run")
def run_method(
    method: str = typer.Option(..., "--method", "-m", help="Method name (`zoobench methods list`)."),
    zoo: str = typer.Option(..., "--zoo", "-z", help="Zoo name or spec file."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Method option, key=value (repeatable)."),
    plugins: Optional[list[str]] = PluginOption,
    no_generate: bool = typer.Option(False, "--no-generate", help="Use only the models and annotations stored."),
    epoch: Optional[int] = typer.Option(None, "--epoch", help="Stored epoch to use (default: the spec's)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: one per core)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="ZOOBENCH_DATA", help="Dataset folder."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Run a method on every cell of a zoo (training and annotating what is missing), then report by phase."""
    from zoobench.runner import run

    store = _store(home)
    spec = store.resolve(zoo)
    try:
        report = run(method, spec, store, _settings(settings or []), plugins or [], epoch, not no_generate, workers,
                     data_root, device)
    except KeyboardInterrupt:
        errors.print("interrupted: finished cells are kept; run the same command again to resume")
        raise typer.Exit(130) from None
    _print_run(report, spec)
    if report.failed:
        messages = Counter(report.failed.values())
        first, count = messages.most_common(1)[0]
        raise ZoobenchError(f"{len(report.failed)} of {report.ran} units failed, {count} with: {first}; each "
                            f"unit's traceback is in {report.results.folder}; the other units' results are stored")


def _settings(pairs: list[str]) -> dict[str, str]:
    from zoobench.errors import UsageError

    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got '{pair}'")
        settings[key.strip()] = value.strip()
    return settings


def _print_run(report, spec) -> None:
    """The results grid of the headline metric, the phase-resolved table and the heatmap's path."""
    from rich.markup import escape

    from zoobench.method import config_table
    from zoobench.report import heatmap, phase_summary

    method, results = report.method, report.results
    table = report.table()
    config = ", ".join(f"{k}={v}" for k, v in config_table(report.config).items()) or "no options"
    title = f"{spec.name} ({spec.fingerprint}) | {method.name} v{method.version}, config {results.config_hash}: {config}"
    shown = escape(title)  # config values may hold brackets that rich would read as markup
    for line in report.prepared:
        console.print(f"{spec.name}: {line}")
    console.print(f"{method.name} on {spec.name}: {report.ran} units computed in {report.seconds:.0f}s, "
                  f"{report.current} already current, {len(report.failed)} failed; results: {results.folder}",
                  soft_wrap=True)
    for unit, why in report.skipped.items():
        console.print(f"[yellow]skipped {unit}: {why}")
    if table.empty:
        return
    metrics = [c for c in table.columns if c not in RESULT_COLUMNS and table[c].dtype.kind in "fi"]
    headline = method.headline
    direction = "higher is better" if method.higher_is_better else "lower is better"
    if method.scope == "zoo":
        units = Table("unit", *metrics, title=shown)
        for row in table.to_dict("records"):
            units.add_row(row["unit"], *(_number(row.get(m)) for m in metrics))
        units.add_row("[bold]mean", *(_number(table[m].mean()) for m in metrics))
        console.print(units)
        return
    texts = {row["unit"]: (_number(row.get(headline)) if row["status"] == "ok" else "fail",
                           PHASE_STYLE.get(row.get("phase"), "dim") if row["status"] == "ok" else "red")
             for row in table.to_dict("records")}
    console.print(_grid(spec, f"{headline} ({direction}); colour = phase", texts))
    summary = phase_summary(table, metrics)
    by_phase = Table("metric", *(f"{r['phase']} ({r['cells']} cells, {r['models']} models)"
                                 for r in summary.to_dict("records")), title=f"by phase: {shown}")
    for metric in [headline, *[m for m in metrics if m != headline]]:
        by_phase.add_row(metric, *(f"{_number(r[f'{metric} mean'])} ± {_number(r[f'{metric} std'])}"
                                   for r in summary.to_dict("records")))
    console.print(by_phase)
    path = heatmap(table, spec, headline, results.folder / f"heatmap-{headline}.png", title)
    console.print(f"heatmap: {path}", soft_wrap=True)


RESULT_COLUMNS = {"zoo", "fingerprint", "method", "version", "config_hash", "unit", "load", "temperature", "status",
                  "n_models", "error", "phase"}


def _number(value) -> str:
    import math

    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


@data_app.command("download")
def data_download(
    dataset: str = typer.Argument(..., help="Dataset name, e.g. cifar10."),
    data_root: Path = typer.Option(..., "--data-root", envvar="ZOOBENCH_DATA", help="Folder to download into."),
) -> None:
    """Fetch a dataset with torchvision's downloader (needs network access)."""
    from zoobench.datasets import DATASETS
    from zoobench.registry import load_target

    info = DATASETS.get(dataset)
    if not info.download:
        console.print(f"{dataset} needs no download: {info.obtain}")
        return
    load_target(info.download, f"dataset '{dataset}'")(info, data_root)
    console.print(f"{dataset} is in {data_root}")


def main() -> None:
    try:
        app()
    except ZoobenchError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)


