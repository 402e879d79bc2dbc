"""How much a cell's phase hangs on one seed: its label again with each seed left out in turn.

A cell's phase is read off seed means: the train loss over its models, mc and CKA over its pairs of
seeds. With three seeds a cell's CKA is the mean of three pairs, each seed in two of them, and on
small zoos the gap between a label and its neighbour can be smaller than one seed's pull. Here
every seed is left out once and the rest are labelled by the same rule (the thresholds the whole
zoo gave, not re-derived); a cell's seed stability is the share of those labels that agree with its
own: 1 when no single seed decides it, lower when dropping one seed moves it into another phase.

It needs each model's loss and each pair's mc and CKA, which annotations keep from cka and mc
version 2 on. A value the rule needs and the remaining seeds lack (CKA of a constant output) gives the
label "?", which disagrees. A cell with fewer than three healthy seeds or without per-pair values, or
labelled "diverged" or "?", has no stability (NaN).
"""

from __future__ import annotations

import math
from typing import Any

from zoobench.landscape.annotations import Annotations
from zoobench.landscape.phases import Rule
from zoobench.landscape.registry import metrics, phase_columns
from zoobench.store import ZooStore


def seed_stability(zoo: ZooStore, table, rule: Rule, epoch: int | None = None) -> dict[str, float]:
    """Cell id -> the share of its leave-one-seed-out labels equal to its phase in `table` (a labelled
    cell table, `zoobench.landscape.phases.classify`), under `rule`."""
    values = _inputs(zoo, zoo.spec.metric_epoch if epoch is None else epoch)
    return {row["cell_id"]: _share(row, values, rule) for row in table.to_dict("records")}


def _inputs(zoo: ZooStore, epoch: int) -> dict[str, dict[str, dict[Any, float]]]:
    """Phase-input column -> cell id -> model id (or pair of model ids) -> its value."""
    found: dict[str, dict[str, dict[Any, float]]] = {}
    for column in phase_columns().values():
        metric = next(m for m in metrics() if any(c.name == column for c in m.columns))
        annotations = Annotations(zoo, metric.name, epoch)
        if metric.scope == "model":
            per_cell: dict[str, dict[Any, float]] = {}
            for row in annotations.models().to_dict("records"):
                per_cell.setdefault(row["cell_id"], {})[row["model_id"]] = row.get(column)
        else:
            per_cell = {cell: {pair: values.get(column) for pair, values in pairs.items()}
                        for cell, pairs in annotations.pairs().items()}
        found[column] = per_cell
    return found


def _share(row: dict[str, Any], values: dict[str, dict[str, dict[Any, float]]], rule: Rule) -> float:
    if row["phase"] in ("diverged", "?"):
        return math.nan
    per_column = {column: {(key if isinstance(key, tuple) else (key,)): value  # the seeds behind each value
                           for key, value in cells.get(row["cell_id"], {}).items()}
                  for column, cells in values.items()}
    if not all(per_column.values()):  # annotated before pairs were kept, or not annotated
        return math.nan
    seeds = sorted({seed for found in per_column.values() for key in found for seed in key})
    if len(seeds) < 3:
        return math.nan
    agree = 0
    for left_out in seeds:
        kept = {}
        for column, found in per_column.items():
            rest = [v for key, v in found.items() if left_out not in key and _finite(v)]
            kept[column] = sum(rest) / len(rest) if rest else None  # missing: the rule says "?" if it needs it
        agree += rule.label(kept)[0] == row["phase"]
    return agree / len(seeds)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
