"""How the command line shows things to a person in a terminal: grids, phase maps, per-phase tables.

Everything here fits an 80-column terminal for the paper's grids: tables have no vertical rules, ids
and metric names are never cut (columns fold instead of ending in an ellipsis), and provenance is a
soft-wrapped line rather than a table title. The numbers come from the API; nothing is computed here.
"""

from __future__ import annotations

import math
import re
import textwrap
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from zoobench.cli.app import console

NO_BREAK = "\u00a0"  # textwrap breaks only at ASCII white space
PHASE_STYLE = {"I": "red", "II": "magenta", "III": "yellow", "IV-A": "cyan", "IV-B": "green", "diverged": "bold red",
               "?": "dim"}


def number(value: Any, digits: int = 3) -> str:
    """A number in a few characters; "-" for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def table(*headers: str) -> Table:
    """A table without vertical rules whose columns fold rather than cut what does not fit."""
    shown = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in headers:
        shown.add_column(header, overflow="fold")
    return shown


def show(title: str, shown: Table) -> None:
    """A table under its title; the title is a line of its own, so it never narrows to the table."""
    line(title)
    console.print(shown)


def line(text: str) -> None:
    """Plain text (paths, configs: no markup) wrapped at spaces; a word longer than the line (a path) is
    never cut, and a value in brackets or braces (a list, a dict) is never split."""
    kept = re.sub(r"\[[^\]]*\]|\{[^}]*\}", lambda group: group.group(0).replace(" ", NO_BREAK), text)
    for wrapped in textwrap.wrap(kept, console.width, break_long_words=False, break_on_hyphens=False) or [""]:
        console.print(wrapped.replace(NO_BREAK, " "), soft_wrap=True, highlight=False, markup=False)


def grid(spec, texts: dict[str, tuple[str, str]]) -> Table:
    """A load x temperature grid of (text, style) per cell id, hottest temperature first, as the paper
    draws it."""
    from zoobench.spec.grid import cell, hot_first

    g = spec.grid
    shown = table(f"{g.temperature.short} \\ {g.load.short}", *map(str, g.load.values))
    for temperature in hot_first(g.temperature):
        row = []
        for load in g.load.values:
            text, style = texts.get(cell(spec, load, temperature).id, ("-", "dim"))
            row.append(f"[{style}]{escape(text)}")
        shown.add_row(f"{temperature:g}", *row)
    return shown


def headline_grid(spec, rows: list[dict], headline: str, higher_is_better: bool) -> None:
    """The headline of every cell, coloured by its phase ("fail" in red where the method failed)."""
    direction = "higher is better" if higher_is_better else "lower is better"
    texts = {row["unit"]: (number(row.get(headline)) if row["status"] == "ok" else "fail",
                           PHASE_STYLE.get(row.get("phase"), "dim") if row["status"] == "ok" else "red")
             for row in rows}
    show(f"{headline} per cell ({direction}; colour = phase):", grid(spec, texts))


def phases(zoo_store, why: bool = False, epoch: int | None = None) -> None:
    """The phase map with its rule, where its metrics come from, and a per-metric summary, when the zoo
    has annotations; with `why`, each label's reason."""
    from zoobench.landscape.annotations import cell_table
    from zoobench.landscape.phases import classify, metric_summary

    spec = zoo_store.spec
    labelled, rule = classify(spec, cell_table(zoo_store, epoch))
    if labelled.empty:
        console.print("no annotations yet: `zoobench zoo annotate` computes them")
        return
    texts = {row["cell_id"]: (row["phase"], PHASE_STYLE[row["phase"]]) for row in labelled.to_dict("records")}
    show("phase per cell:", grid(spec, texts))
    line(f"rule: {rule.summary()}")
    line(provenance(labelled, epoch if epoch is not None else spec.metric_epoch))
    summary = table("metric", "cells", "mean", "min", "max")
    for row in metric_summary(labelled).to_dict("records"):
        summary.add_row(row["metric"], str(row["cells"]), *(number(row[k], 4) for k in ("mean", "min", "max")))
    show("per-metric summary over cells:", summary)
    if why:
        for row in labelled.to_dict("records"):
            line(f"{row['cell_id']}: {row['phase']}: {row['reason']}")


def provenance(labelled, epoch: int) -> str:
    """Where a labelled cell table's metrics come from, in one line."""
    source = labelled["source"].iloc[0]
    who = "published by the zoo's authors" if source == "published" else "computed by zoobench"
    return f"metrics at epoch {epoch}: {who}; CKA: {labelled['cka_estimator'].iloc[0]}"


def by_phase(phase_rows, headline: str, key_metrics: tuple[str, ...], unit: str = "cells") -> None:
    """Per phase: the headline (mean ± std over cells, and its bootstrap CI), then the method's key
    metrics (mean over cells), each metric under its full name."""
    from zoobench.reports import tables

    rows = phase_rows.to_dict("records")
    groups = list(dict.fromkeys(row["phase"] for row in rows))
    value = {(row["phase"], row["metric"]): row for row in rows}
    shown = table("phase", unit, "models", f"{headline} mean ± std", f"{tables.LEVEL:.0%} CI")
    for group in groups:
        row = value.get((group, headline))
        if row is not None:
            shown.add_row(f"[{PHASE_STYLE.get(group, 'bold')}]{group}", str(row["cells"]), str(row["models"]),
                          f"{number(row['mean'])} ± {number(row['std'])}",
                          escape(f"[{number(row['ci_low'])}, {number(row['ci_high'])}]"))
    show(f"{headline} by phase ({tables.CI_NOTE.replace('cells', unit)}):", shown)
    present = [metric for metric in key_metrics if any((group, metric) in value for group in groups)]
    if present:
        keys = table("phase", *present)
        for group in groups:
            keys.add_row(f"[{PHASE_STYLE.get(group, 'bold')}]{group}",
                         *(number(value[(group, m)]["mean"]) if (group, m) in value else "-" for m in present))
        show(f"key metrics by phase (mean over {unit}):", keys)


def full_phase_table(phase_rows, headline: str, title: str, unit: str = "cells") -> None:
    """Every number a method reported, per phase (mean ± std over cells): wide, for --full and `show`."""
    from zoobench.reports import tables

    turned = tables.phase_grid(phase_rows, headline, unit=unit)
    shown = table(*map(escape, turned.columns))
    for row in turned.itertuples(index=False, name=None):
        shown.add_row(*(escape(str(v)) if isinstance(v, str) else "" for v in row))
    show(title, shown)


def per_unit(cells, title: str) -> None:
    """A per-cell (or per-unit) results table."""
    shown = table(*map(escape, map(str, cells.columns)))
    for row in cells.itertuples(index=False, name=None):
        shown.add_row(*(number(v) if isinstance(v, float) else escape(str(v)) for v in row))
    show(title, shown)


def metrics_by_unit(frame, metrics: list[str]) -> None:
    """A zoo-scope method's units (e.g. the probe's splits) as rows, one column per metric, grouped by kind
    of unit (random0..4, cross_phase, ...), with the mean of each kind that has several units (a random
    split and a cross split answer different questions, so no mean mixes them)."""
    from zoobench.reports.tables import ALL, unit_kind, unit_kinds

    shown = table("unit", *metrics)
    units = frame["unit"].astype(str)
    kinds = units.map(unit_kind)
    for kind in unit_kinds(units):
        part = frame if kind == ALL else frame[kinds == kind]
        for row in part.to_dict("records"):
            shown.add_row(str(row["unit"]), *(number(row[m]) for m in metrics))
        if len(part) > 1:
            shown.add_row("mean" if kind == ALL else f"{kind} mean",
                          *(number(float(part[m].mean())) for m in metrics), style="bold", end_section=True)
    show("headline and key metrics per unit:", shown)
