"""`zoobench run`, `zoobench report`, `zoobench methods list` and `zoobench data download`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from zoobench.cli import render
from zoobench.cli.app import (ZooOption, app, console, data_app, errors, methods_app, resolve, settings,
                              shared_options)
from zoobench.errors import UsageError, ZoobenchError
from zoobench.execution import Execution


@app.command("run")
@shared_options(training=True)
def run_method(
    method: str = typer.Option(..., "--method", "-m", help="Method name (`zoobench methods list`)."),
    zoo: str = ZooOption,
    pairs: Optional[list[str]] = typer.Option(None, "--set", help="Method option, key=value (repeatable)."),
    no_generate: bool = typer.Option(False, "--no-generate", help="Use only the models and annotations stored."),
    full: bool = typer.Option(False, "--full", help="Also print every number the method reported, per phase "
                              "(wide; `zoobench leaderboard show` has it too)."),
    *, plugins: Optional[list[str]], epoch: Optional[int], home: Optional[Path], execution: Execution,
) -> None:
    """Run a method on every cell of a zoo (training and annotating what is missing), then report by phase."""
    from zoobench.bench.runner import run

    the_store, spec = resolve(zoo, home)
    report = run(method, spec, the_store, settings=settings(pairs), plugins=plugins or [], epoch=epoch,
                 generate_missing=not no_generate, execution=execution)
    _print_run(report, spec, full)
    if report.failed:
        messages = Counter(report.failed.values())
        first, count = messages.most_common(1)[0]
        raise ZoobenchError(f"{len(report.failed)} of {report.ran} units failed, {count} with: {first}; each "
                            f"unit's traceback is in {report.results.folder}; the other units' results are stored")


def _print_run(report, spec, full: bool) -> None:
    """What was done, the headline per cell coloured by phase, the headline and key metrics per phase,
    and where the results and the heatmap are."""
    from zoobench.reports import tables

    method = report.method
    for text in report.prepared:
        render.line(f"{spec.name}: {text}")
    for model_id, problem in report.damaged.items():
        console.print(f"[yellow]left out damaged model {model_id} ({problem}); its cell runs with its other seeds; "
                      f"`zoobench zoo generate {spec.name}` retrains it", soft_wrap=True, highlight=False)
    render.line(f"{method.name} on {spec.name}: {report.ran} units computed in {report.seconds:.0f}s, "
                f"{report.current} already current, {len(report.failed)} failed")
    render.line(report.title)
    for unit, why in report.skipped.items():
        console.print(f"[yellow]skipped {unit}: {why}", soft_wrap=True, highlight=False)
    table = report.table()
    if not table.empty:
        headline = method.headline
        metrics = tables.metrics(table, headline)
        if method.scope == "zoo":
            render.metrics_by_unit(table[table["status"] == "ok"], [headline, *[m for m in method.key_metrics
                                                                                 if m in metrics]])
        else:
            render.headline_grid(spec, table.to_dict("records"), headline, method.higher_is_better)
            phases = tables.phase_table(table, headline)
            if headline in table:
                render.by_phase(phases, headline, method.key_metrics)
            else:
                console.print(f"[yellow]{method.name} reported no '{headline}' on {spec.name} (e.g. accuracy on a "
                              f"task without classes): no heatmap", soft_wrap=True)
            if full or headline not in table:
                render.full_phase_table(phases, headline, "every number it reported, by phase (mean ± std over cells):")
    render.line(f"results: {report.results.folder}")
    if report.heatmap is not None:
        render.line(f"heatmap: {report.heatmap}")


@app.command("report")
@shared_options()
def report(
    zoo: str = ZooOption,
    out: Path = typer.Option(..., "--out", help="HTML file to write."),
    methods: Optional[list[str]] = typer.Option(None, "--method", "-m", help="Only these methods (repeatable; "
                                                "default: every method with stored results)."),
    comparisons: Optional[list[str]] = typer.Option(None, "--compare", help="Two methods to compare, M1,M2 "
                                                    "(repeatable)."),
    screenshot: Optional[Path] = typer.Option(None, "--screenshot", help="Also render the page in headless "
                                              "Chromium and save this PNG (checks that it renders)."),
    *, plugins: Optional[list[str]], epoch: Optional[int], home: Optional[Path],
) -> None:
    """One self-contained HTML file: zoo sheet, every method's tables and heatmap, comparisons, provenance."""
    from zoobench.reports.html_report import write_report

    pairs = []
    for text in comparisons or []:
        names = [n.strip() for n in text.split(",")]
        if len(names) != 2 or not all(names):
            raise UsageError(f"--compare expects two methods as M1,M2, got '{text}'")
        pairs.append((names[0], names[1]))
    the_store, spec = resolve(zoo, home)
    path = write_report(spec, out, the_store, methods or None, pairs, plugins or [], epoch)
    render.line(f"report: {path}")
    if screenshot is not None:
        from zoobench.reports.browser import screenshot as render_page

        render.line(f"rendered without errors: {render_page(path, screenshot)}")


@methods_app.command("list")
@shared_options()
def methods_list(*, plugins: Optional[list[str]]) -> None:
    """Every method found and where it comes from (installed methods are not imported to list them)."""
    from zoobench.bench.plugins import discover

    found = discover(plugins or [])
    shown = render.table("method", "origin")
    for name in found.names():
        shown.add_row(name, found.origin(name))
    console.print(shown)
    render.line("`zoobench methods show NAME` shows a method's headline, options and defaults")
    _warn(found)


@methods_app.command("show")
@shared_options()
def methods_show(name: str = typer.Argument(..., help="Method name."), *, plugins: Optional[list[str]]) -> None:
    """One method: what it reports, its options with their types and defaults, and where it comes from."""
    from zoobench.bench.plugins import describe, discover

    found = discover(plugins or [])
    for label, value in describe(found, name):
        render.line(f"{label}: {value}")


def _warn(found) -> None:
    for broken in found.broken:
        errors.print(f"warning: plugin {broken.origin} skipped: {broken.error}", markup=False, highlight=False,
                     soft_wrap=True)


@data_app.command("download")
def data_download(
    dataset: str = typer.Argument(..., help="Dataset name, e.g. cifar10."),
    data_root: Path = typer.Option(..., "--data-root", envvar="ZOOBENCH_DATA", help="Folder to download into."),
) -> None:
    """Fetch a dataset with torchvision's downloader (needs network access)."""
    from zoobench.data import download

    render.line(download(dataset, data_root))
