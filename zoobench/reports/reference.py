"""A zoo against a reference: per metric the rank correlation and median ratio over the cells both
have, and how often their phases agree, as tables and a side-by-side figure.

How a user who regenerates ``cifar10_r18`` checks it against the paper (``cifar10_r18@ptmz``). Cells
are matched by their load and temperature values, each side labelled by the phase rule on its own
cells (the rule is relative to what a zoo spans, so a constant offset between two estimators does not
move a label). Like must still be compared with like: the comparison says which CKA estimator made
each side's CKA, and warns when they differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoobench.errors import UsageError
from zoobench.landscape.annotations import cell_table
from zoobench.landscape.phases import classify
from zoobench.reports import tables
from zoobench.store import ZooStore, atomic

METRICS = ("train_loss", "test_acc", "gap", "cka", "mc", "hessian_log_trace")


@dataclass
class ReferenceComparison:
    zoo: str
    reference: str
    epochs: tuple[int, int]  # (zoo, reference)
    metrics: Any  # pandas: metric, cells, spearman, median_ratio
    cells: Any  # pandas: cell_id, load, temperature, phase, reference_phase, agree, <metric>, reference_<metric>
    agreement: float  # fraction of the labelled cells both have on which the phases agree
    estimators: tuple[str, str]  # the CKA estimator of each side
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def same_estimator(self) -> bool:
        return self.estimators[0] == self.estimators[1]


def compare_reference(zoo: ZooStore, reference: ZooStore, epoch: int | None = None,
                      reference_epoch: int | None = None, out: str | Path | None = None) -> ReferenceComparison:
    """Compare the annotated cells of `zoo` with those of `reference`; writes the cell and metric tables
    (CSV) and the figure into `out` (default: the zoo's ``comparisons/`` folder)."""
    import pandas as pd
    from scipy.stats import spearmanr

    epochs = (zoo.spec.metric_epoch if epoch is None else epoch,
              reference.spec.metric_epoch if reference_epoch is None else reference_epoch)
    mine, _ = classify(zoo.spec, cell_table(zoo, epochs[0]))
    theirs, _ = classify(reference.spec, cell_table(reference, epochs[1]))
    both = mine.merge(theirs, on=["load", "temperature"], suffixes=("", "_reference"))
    if both.empty:
        raise UsageError(f"{zoo.spec.name} (epoch {epochs[0]}) and {reference.spec.name} (epoch {epochs[1]}) have no "
                         f"annotated cell in common (cells are matched by load and temperature); annotate the zoo "
                         f"first (`zoobench zoo annotate {zoo.spec.name}`)")
    rows = []
    for metric in METRICS:
        if metric not in mine or metric not in theirs:
            continue
        pairs = both[[metric, f"{metric}_reference"]].astype(float).dropna()
        rho = spearmanr(pairs[metric], pairs[f"{metric}_reference"]).statistic if len(pairs) >= 3 else math.nan
        ratios = (pairs[metric] / pairs[f"{metric}_reference"]).replace([math.inf, -math.inf], math.nan).dropna()
        rows.append({"metric": metric, "cells": len(pairs), "spearman": float(rho),
                     "median_ratio": float(ratios.median()) if len(ratios) else math.nan})
    cells = both.rename(columns={"phase_reference": "reference_phase"})
    cells = cells.rename(columns={f"{m}_reference": f"reference_{m}" for m in METRICS})
    cells["agree"] = cells["phase"] == cells["reference_phase"]
    labelled = cells[~cells["phase"].isin(["?"]) & ~cells["reference_phase"].isin(["?"])]
    shown = ["cell_id", "load", "temperature", "phase", "reference_phase", "agree",
             *(c for m in METRICS for c in (m, f"reference_{m}") if c in cells)]
    result = ReferenceComparison(
        zoo.spec.name, reference.spec.name, epochs, pd.DataFrame(rows, columns=["metric", "cells", "spearman",
                                                                                "median_ratio"]),
        cells[shown], float(labelled["agree"].mean()) if len(labelled) else math.nan,
        (str(mine["cka_estimator"].iloc[0]), str(theirs["cka_estimator"].iloc[0])))
    folder = Path(out) if out is not None else zoo.path / "comparisons"
    stem = f"{zoo.spec.name}-e{epochs[0]}-vs-{reference.spec.name}-e{epochs[1]}".replace("@", "-")
    result.files = {"metrics_csv": folder / f"{stem}-metrics.csv", "cells_csv": folder / f"{stem}-cells.csv",
                    "figure": folder / f"{stem}.png"}
    atomic.write_text(result.files["metrics_csv"], tables.to_csv(result.metrics))
    atomic.write_text(result.files["cells_csv"], tables.to_csv(result.cells))
    _figure(result, zoo, result.files["figure"])
    return result


def _figure(result: ReferenceComparison, zoo: ZooStore, path: Path) -> Path:
    """Per metric, the zoo and the reference side by side on shared colour limits; then both phase maps."""
    from zoobench.landscape.registry import column
    from zoobench.reports.panels import figure_style, make_panel, panel_figure, phase_panel, save, share_limits

    spec, cells = zoo.spec, result.cells
    phases = dict(zip(cells["cell_id"], cells["phase"]))
    reference_phases = dict(zip(cells["cell_id"], cells["reference_phase"]))
    panels = []
    for metric in result.metrics["metric"]:
        declared = column(metric)
        options = {"signed": declared.signed if declared else None, "log": bool(declared and declared.log),
                   "key": "cell_id"}
        notes = [f"\n{estimator}" if metric == "cka" else "" for estimator in result.estimators]
        pair = [make_panel(cells, spec, metric, f"{result.zoo}: {metric}{notes[0]}", phases=phases, **options),
                make_panel(cells.assign(**{metric: cells[f"reference_{metric}"]}), spec, metric,
                           f"{result.reference}: {metric}{notes[1]}", phases=reference_phases, **options)]
        panels += share_limits(pair)
    panels += [phase_panel(phases, spec, f"{result.zoo}: phase"),
               phase_panel(reference_phases, spec, f"{result.reference}: phase "
                                                   f"({result.agreement:.0%} agree)")]
    title = (f"{result.zoo} (epoch {result.epochs[0]}) vs {result.reference} (epoch {result.epochs[1]}); "
             f"seed means per cell")
    with figure_style():
        return save(panel_figure(panels, spec, title, columns=2), path)
