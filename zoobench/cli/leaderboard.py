"""`zoobench leaderboard ...`: stored results as tables, comparisons of two methods, publishing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from zoobench.cli import render
from zoobench.cli.app import ZooOption, console, leaderboard_app, resolve, settings, shared_options, store
from zoobench.errors import UsageError, ZoobenchError

OUTCOME_STYLE = {"win": ("W", "green"), "tie": ("T", "yellow"), "loss": ("L", "red"), "missing": ("-", "dim")}


@leaderboard_app.command("show")
@shared_options()
def leaderboard_show(
    zoo: str = ZooOption,
    method: Optional[str] = typer.Option(None, "--method", "-m", help="One method in detail (default: the headline "
                                         "of every method with stored results, per phase)."),
    format: str = typer.Option("rich", "--format", help="rich, csv, markdown or json."),
    which: str = typer.Option("both", "--table", help="With --method: phases, cells or both."),
    pairs: Optional[list[str]] = typer.Option(None, "--set", help="Method option of --method, key=value "
                                              "(repeatable; default: the default config)."),
    *, plugins: Optional[list[str]], epoch: Optional[int], home: Optional[Path],
) -> None:
    """Stored results as tables: per phase (mean, std, the headline's bootstrap CI) and per cell. Runs nothing."""
    from zoobench.reports import boards, tables

    boards.check_choices(format, which)
    if pairs and not method:
        raise UsageError("--set needs --method")
    the_store, spec = resolve(zoo, home)
    if method:
        board = boards.from_store(method, spec, the_store, settings(pairs), plugins or [], epoch)
        if format != "rich":
            print(boards.render_board(board, format, which), end="")
            return
        _print_board(board, spec, which)
        return
    names = boards.stored_methods(spec, the_store, plugins or [], epoch)
    if not names:
        raise ZoobenchError(f"no method has stored results of its default config on {spec.name} in {the_store.home}; "
                            f"run `zoobench run --method M --zoo {spec.name}` first")
    found = [boards.from_store(name, spec, the_store, None, plugins or [], epoch) for name in names]
    if format != "rich":
        print(boards.render_overview(found, format), end="")
        return
    render.line(f"{spec.name} ({spec.fingerprint}): every method's headline per phase, default configs "
                f"(↑ higher, ↓ lower is better; mean over cells, {tables.CI_NOTE}):")
    shown = render.table("method", "headline", "phase", "cells", "mean", f"{tables.LEVEL:.0%} CI")
    for method, rows in boards.overview(found).groupby("method", sort=True):
        for index, row in enumerate(rows.to_dict("records")):
            headline = f"{row['headline']} {'↑' if row['higher_is_better'] else '↓'}"
            shown.add_row(method if index == 0 else "", headline if index == 0 else "",
                          f"[{render.PHASE_STYLE.get(row['phase'], 'bold')}]{row['phase']}", str(row["cells"]),
                          render.number(row["mean"]), escape(f"[{render.number(row['ci_low'])}, "
                                                            f"{render.number(row['ci_high'])}]"),
                          end_section=index == len(rows) - 1)
    console.print(shown)


def _print_board(board, spec, which: str) -> None:
    """One method's results: the headline over the grid coloured by phase, the phase table, the cells."""
    from zoobench.reports import tables

    p = board.provenance
    render.line(f"{board.title}; epoch {p['epoch']}; {p['ok_units']}/{p['units']} units ok, {p['models']} models; "
                f"results: {board.source}")
    cells = board.cells()
    if board.scope != "zoo" and which == "both":
        render.headline_grid(spec, cells.to_dict("records"), board.headline, board.higher_is_better)
    if which in ("phases", "both"):
        unit = "units" if board.scope == "zoo" else "cells"
        by = "kind of unit" if board.scope == "zoo" else "phase"
        render.full_phase_table(board.phases(), board.headline, f"by {by}: {board.method}; mean ± std over {unit}; "
                                f"{tables.CI_NOTE.replace('cells', unit)}", unit)
    if which == "cells" or (which == "both" and board.scope == "zoo"):
        if which == "both":  # the zoo-scope overview: the headline per unit
            cells = cells[[c for c in ("unit", "status", "n_models", board.headline) if c in cells]]
        render.per_unit(cells, f"{board.method} {'per unit' if board.scope == 'zoo' else 'per cell (seed means)'}")


@leaderboard_app.command("compare")
@shared_options()
def leaderboard_compare(
    first: str = typer.Argument(..., help="Method name (its stored results) or a published leaderboard folder."),
    second: str = typer.Argument(..., help="Method name or published leaderboard folder (e.g. "
                                 "leaderboards/digits_mlp/rebasin)."),
    zoo: str = ZooOption,
    metric: Optional[str] = typer.Option(None, "--metric", help="Compare on this metric (both must report it)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the figure and tables (default: the zoo's "
                                       "comparisons/ folder in the store)."),
    *, plugins: Optional[list[str]], epoch: Optional[int], home: Optional[Path],
) -> None:
    """Two methods side by side on shared colour limits, their difference (ties hatched), wins/ties/losses per phase."""
    from zoobench.reports.compare import compare

    the_store, spec = resolve(zoo, home)
    result = compare(first, second, spec, the_store, metric, out, plugins or [], epoch)
    a, b = result.first.label, result.second.label
    better = "higher" if result.higher_is_better else "lower"
    render.line(f"{a} vs {b} on {result.metric} ({better} is better); first: {result.first.title}; "
                f"second: {result.second.title}")
    render.line(f"a tie is |{a} - {b}| <= the cell's seed noise: {result.noise_source}")
    texts = {row["unit"]: (OUTCOME_STYLE[row["outcome"]][0] + (f"{row['difference']:+.2f}"
                                                               if row["outcome"] != "missing" else ""),
                           OUTCOME_STYLE[row["outcome"]][1]) for row in result.cells.to_dict("records")}
    render.show(f"{a} - {b} per cell: W = {a} better beyond seed noise, T = tie, L = {b} better:",
                render.grid(spec, texts))
    wins = render.table("phase", "cells", "wins", "ties", "losses", "missing", "mean diff.")
    for row in result.phases.to_dict("records"):
        wins.add_row(f"[{render.PHASE_STYLE.get(row['phase'], 'bold')}]{row['phase']}", str(row["cells"]),
                     str(row["wins"]), str(row["ties"]), str(row["losses"]), str(row["missing"]),
                     render.number(row["mean_difference"]))
    render.show(f"{result.metric}: wins, ties and losses of {a} against {b} per phase:", wins)
    for name, path in result.files.items():
        render.line(f"{name}: {path}")


@leaderboard_app.command("publish")
@shared_options()
def leaderboard_publish(
    zoo: str = ZooOption,
    methods: Optional[list[str]] = typer.Option(None, "--method", "-m", help="Method to publish (repeatable; "
                                                "default: every built-in method with stored results)."),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Leaderboards folder."),
    *, plugins: Optional[list[str]], epoch: Optional[int], home: Optional[Path],
) -> None:
    """Write the stored default-config results as a leaderboard (CSV, Markdown, PNG) and its index. Runs nothing."""
    from zoobench.reports.leaderboard import publish

    the_store, spec = resolve(zoo, home)
    report = publish(spec, the_store, methods or None, out, plugins or [], epoch)
    for folder in report.folders:
        render.line(f"published {folder}")
    render.line(f"index: {report.index}")


@leaderboard_app.command("reference")
@shared_options()
def leaderboard_reference(
    zoos: Optional[list[str]] = typer.Option(None, "--zoo", "-z", help="Reference zoo (repeatable; default: every "
                                             "shipped one, e.g. cifar10_r18@ptmz)."),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Leaderboards folder."),
    *, home: Optional[Path],
) -> None:
    """Write the phases and zoo sheet of the shipped reference zoos (the paper's published metrics) under
    OUT/reference/, and the index. Runs nothing."""
    from zoobench.reports.leaderboard import publish_reference

    report = publish_reference(store(home), zoos or None, out)
    for folder in report.folders:
        render.line(f"published {folder}")
    render.line(f"index: {report.index}")
