"""Figures of a zoo and of method results: load x temperature heatmaps, compare rows, the zoo sheet.

Every panel follows the field's convention (`zoobench.reports.panels`): x = load, y = temperature
with the hottest row at the top, one seed-mean value per cell, diverging colour maps centred at 0
for signed values, phase boundaries drawn where asked. Figures are saved without dates or software
versions, so the same inputs give the same bytes, and written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from zoobench.landscape.registry import metrics
from zoobench.reports.panels import (Panel, figure_style, finite_number, make_panel, panel_figure, phase_panel,
                                     save, share_limits)
from zoobench.spec import ZooSpec


def heatmap(table, spec: ZooSpec, metric: str, path: Path, title: str, limits: tuple[float, float] | None = None,
            phases: Mapping[str, str] | None = None, ties: Iterable[str] | None = None,
            annotate: bool | None = None, signed: bool | None = None, log: bool = False) -> Path:
    """Write a load x temperature heatmap of `metric` (one value per cell of `table`, by its "unit").

    `limits` fixes the colour range (to compare methods); `phases` (cell id -> phase) draws the phase
    boundaries; `ties` hatches cells (e.g. differences within seed noise); `annotate` writes the
    values in the cells (default: grids of at most 100 cells)."""
    panel = make_panel(table, spec, metric, metric, limits, phases, ties, signed, log)
    share_limits([panel])
    models = "/".join(map(str, panel.counts)) or "0"
    with figure_style():
        figure = panel_figure([panel], spec, f"{title}\n{metric}; {models} models per cell", annotate=annotate)
        return save(figure, path)


def heatmap_row(panels: Sequence[Mapping[str, Any]], spec: ZooSpec, path: Path, title: str,
                shared_limits: bool = True, annotate: bool | None = None) -> Path:
    """Write panels side by side in one figure (the compare view).

    Each panel is a dict {"table", "metric", "subtitle", and optionally "limits", "ties", "phases",
    "signed", "log"}. With `shared_limits`, panels without explicit "limits" that show the same
    metric share one colour range (symmetric around 0 for a signed metric); explicit limits win."""
    built = row_panels(panels, spec, shared_limits)
    with figure_style():
        figure = panel_figure(built, spec, title, annotate=annotate)
        return save(figure, path)


def row_panels(panels: Sequence[Mapping[str, Any]], spec: ZooSpec, shared_limits: bool = True) -> list[Panel]:
    """The panels of `heatmap_row` with their colour limits resolved."""
    built = [make_panel(p["table"], spec, p["metric"], p.get("subtitle", ""), p.get("limits"), p.get("phases"),
                        p.get("ties"), p.get("signed"), p.get("log", False)) for p in panels]
    for panel in built:  # every number says how many models are behind it
        if panel.counts:
            panel.subtitle = f"{panel.subtitle or panel.metric} ({'/'.join(map(str, panel.counts))} models/cell)"
    return share_limits(built, shared_limits)


def sheet_panels(zoo, methods: Sequence[tuple[str, Any, str]] = (), epoch: int | None = None,
                 table=None) -> list[Panel]:
    """The panels of `zoo_sheet`: the zoo's metrics (every catalogue column marked for the sheet that the
    zoo's task has, in registration order), its phase map, then one per method."""
    from zoobench.landscape.phases import phase_table, rule

    spec = zoo.spec
    table = phase_table(zoo, epoch) if table is None else table
    phases = dict(zip(table["cell_id"], table["phase"])) if "phase" in table else {}
    panels = []
    for column in (c for metric in metrics() for c in metric.columns if c.sheet and (
            c.name in table or not any(other.name in table for other in metric.columns))):
        # a column its metric did not produce (test accuracy of a PDE, relative L2 error of a classifier)
        # has no panel; a metric not annotated yet shows its panels empty, saying so
        title = column.title
        if column.name == "cka" and "cka_estimator" in table and len(table):
            title = f"{title}\n{table['cka_estimator'].iloc[0]}"  # which estimator made it
        panel = make_panel(table, spec, column.name, title, phases=phases, signed=column.signed,
                           log=column.log, key="cell_id")
        if panel.note:
            panel.note = f"{column.name} not annotated"
        panels.append(panel)
    panels.append(phase_panel(phases, spec, f"phase\n{rule(spec, table).summary(reasons=False)}"))
    for name, results, metric in methods:
        panels.append(make_panel(results, spec, metric, name, phases=phases))
    return share_limits(panels, shared=False)


def zoo_sheet(zoo, path: Path, methods: Sequence[tuple[str, Any, str]] = (), epoch: int | None = None) -> Path:
    """Write the paper's multi-panel view of one zoo: train loss, test accuracy, generalization gap,
    CKA, log Hessian trace, mc, the phase map, and one panel per `methods` entry (title, results
    table with a "unit" column, metric), each metric panel with the phase boundaries drawn."""
    from zoobench.landscape.phases import phase_table

    spec = zoo.spec
    epoch = spec.metric_epoch if epoch is None else epoch
    table = phase_table(zoo, epoch)
    panels = sheet_panels(zoo, methods, epoch, table)
    counts = sorted({int(n) for n in table["models"] if finite_number(n) is not None}) if "models" in table else []
    source = "published metrics" if "source" in table and (table["source"] == "published").any() else "computed metrics"
    title = (f"{spec.name} ({spec.fingerprint}), epoch {epoch}, {'/'.join(map(str, counts)) or 0} models per "
             f"cell; seed means per cell; {source}")
    per_row = 3 if len(panels) <= 9 else 4
    with figure_style():
        figure = panel_figure(panels, spec, title, columns=per_row)
        return save(figure, path)


