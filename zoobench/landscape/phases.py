"""Phase labels of a zoo's cells from their loss-landscape metrics (Yang et al. 2021; PTMZ README).

    phase                          train loss   mode connectivity   CKA
    I    underfitted & undersized  high         negative (barrier)  -
    II   underfitted               high         positive / ~0       -
    III  undersized                small        negative            -
    IV-A overfitted                small        ~0                  small
    IV-B generalizing              small        ~0                  large

The Hessian is reported beside the label, not used by it: in the paper it separates the same
regions as the train loss. Which columns provide the rule's three inputs (loss, connectivity,
similarity) the metric catalogue says. A cell with a diverged seed is labelled "diverged"; a cell
lacking a metric the rule needs is labelled "?". Every label carries the values and thresholds
behind it.
"""

from __future__ import annotations

import math
from typing import Any

from zoobench.data import DATASETS
from zoobench.landscape.annotations import cell_table
from zoobench.landscape.registry import columns, phase_columns
from zoobench.spec import ZooSpec
from zoobench.store import ZooStore

PHASES = ("I", "II", "III", "IV-A", "IV-B", "diverged", "?")


def loss_threshold(spec: ZooSpec, train_losses: list[float]) -> tuple[float | None, str]:
    """The train-loss threshold in force and how it was chosen."""
    if spec.phases.train_loss is not None:
        return spec.phases.train_loss, "from the spec"
    info = DATASETS.get(spec.data.dataset)
    if info.task == "classification":
        return 0.1 * math.log(info.num_outputs), f"0.1 x ln({info.num_outputs}), a tenth of chance"
    finite = [v for v in train_losses if v is not None and v > 0 and math.isfinite(v)]
    if not finite:
        return None, "no finite train losses"
    return math.sqrt(min(finite) * max(finite)), "geometric middle of the zoo's train losses"


def label(row: dict[str, Any], spec: ZooSpec, threshold: float | None) -> tuple[str, str]:
    """(phase, why) for one cell's metrics."""
    if row.get("diverged"):
        return "diverged", f"{int(row['diverged'])} seed(s) diverged"
    inputs = phase_columns()
    loss, mc, cka = (row.get(inputs.get(role, "")) for role in ("loss", "connectivity", "similarity"))
    missing = [name for name, value in (("train loss", loss), ("mc", mc)) if _missing(value)]
    if missing or threshold is None:
        return "?", f"missing {', '.join(missing) or 'a train-loss threshold'}"
    eps = spec.phases.mc
    high = loss > threshold
    loss_text = f"train loss {loss:.3g} {'>' if high else '<='} {threshold:.3g}"
    if mc < -eps:
        return ("I" if high else "III"), f"{loss_text}, mc {mc:.3g} < -{eps:g} (barrier)"
    if high:
        return "II", f"{loss_text}, mc {mc:.3g} >= -{eps:g} (no barrier)"
    mc_text = f"mc {mc:.3g} >= -{eps:g}"
    if _missing(cka):
        return "?", f"{loss_text}, {mc_text}, missing CKA"
    if cka >= spec.phases.cka:
        return "IV-B", f"{loss_text}, {mc_text}, CKA {cka:.3g} >= {spec.phases.cka:g}"
    return "IV-A", f"{loss_text}, {mc_text}, CKA {cka:.3g} < {spec.phases.cka:g}"


def phase_table(zoo: ZooStore, epoch: int | None = None):
    """Every annotated cell with its metrics, phase and the reason for it (pandas)."""
    table = cell_table(zoo, epoch=epoch)
    if table.empty:
        return table.assign(phase=[], reason=[])
    threshold, _ = loss_threshold(zoo.spec, train_losses(table))
    labels = [label(row, zoo.spec, threshold) for row in table.to_dict("records")]
    return table.assign(phase=[p for p, _ in labels], reason=[r for _, r in labels])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def train_losses(table) -> list[float]:
    """The values of the phase rule's loss input in a cell table (empty when it has none)."""
    loss = phase_columns().get("loss")
    return table[loss].tolist() if loss in table else []


def metric_summary(table):
    """Per declared metric column present in a cell table: how many cells have it, its mean, min and
    max over cells (pandas; what `zoo show` prints under the phase map)."""
    import pandas as pd

    rows = []
    for column in columns():
        values = table[column.name].dropna() if column.name in table else []
        if len(values):
            rows.append({"metric": column.name, "cells": len(values), "mean": float(values.mean()),
                         "min": float(values.min()), "max": float(values.max())})
    return pd.DataFrame(rows, columns=["metric", "cells", "mean", "min", "max"])
