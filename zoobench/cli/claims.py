"""`zoobench claims`: the paper's findings tested on a zoo, each with its statistic, CI and verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from zoobench.cli import render
from zoobench.cli.app import ZooOption, app, console, resolve, shared_options

VERDICT_STYLE = {"reproduced": "green", "not reproduced": "red", "inconclusive": "yellow", "not applicable": "dim"}


@app.command("claims")
@shared_options()
def claims(
    zoo: str = ZooOption,
    format: str = typer.Option("table", "--format", help="table, csv, json or md."),
    methods: Optional[list[str]] = typer.Option(None, "--method", "-m", help="Use only these methods' results "
                                                "(repeatable; default: every method's stored default-config "
                                                "results)."),
    *, plugins: Optional[list[str]], epoch: Optional[int], home: Optional[Path],
) -> None:
    """Test the paper's findings on a zoo: per claim a statistic over cells, its bootstrap 95% CI and a verdict
    (reproduced, not reproduced, inconclusive, not applicable). Runs nothing."""
    from zoobench.reports import claims as api

    format = api.check_format(format)
    the_store, spec = resolve(zoo, home)
    report = api.check_claims(spec, the_store, epoch, methods or None, plugins or [])
    if format != "table":
        print(api.render(report, format), end="")
        return
    render.line(api.provenance(report))
    shown = render.table()
    shown.add_column("claim", ratio=1, min_width=24, overflow="fold")
    shown.add_column("statistic", no_wrap=True, justify="right")
    shown.add_column(f"{api.tables.LEVEL:.0%} CI", no_wrap=True)
    shown.add_column("verdict", max_width=12)
    for row in report.table.to_dict("records"):
        method = f" [{row['method']}]" if row["method"] else ""
        detail = row["reason"] if row["reason"] else (f"{row['statistic']} {row['direction']} "
                                                      f"{api.tables.number(row['threshold'])}; {row['groups']}")
        shown.add_row(f"[bold]{row['id']}[/] {escape(row['finding'])}{escape(method)}\n[dim]{escape(detail)}",
                      render.number(row["value"]), escape(api.interval(row)),
                      f"[{VERDICT_STYLE[row['verdict']]}]{row['verdict']}", end_section=True)
    console.print(shown)
    render.line(report.counts())
