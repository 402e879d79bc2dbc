"""Phase labels of a zoo's cells from their loss-landscape metrics (Yang et al. 2021; PTMZ README).

    phase                          train loss   mode connectivity   CKA
    I    underfitted & undersized  high         negative (barrier)  -
    II   underfitted               high         positive / ~0       -
                                   (or small)   positive            -
    III  undersized                small        negative            -
    IV-A overfitted                small        ~0                  small
    IV-B generalizing              small        ~0                  large

One rule for every zoo, aware of each metric's scale. "High" train loss is a tenth of the chance
loss ln(classes) (a property of the task, not of the zoo); a clearly positive mc (the curve between
two seeds finds lower loss than its ends, so the ends are under-trained) is II whatever the loss.
"Near zero" and "large" are relative to what the zoo spans, because the magnitudes are not comparable across zoos and estimators: mc is a
barrier below minus a third of the zoo's typical barrier height (the 90th percentile of |mc| over
its cells, never below half a point of error), so a zoo whose deepest barriers are 25 points of
error does not call a 1-point dip a barrier; CKA is large from the middle of the zoo's range (10th
to 90th percentile) up, which makes the label the same whichever CKA estimator made the numbers (the
biased estimator the paper used reads higher than the unbiased one, by a roughly constant offset).
These defaults were chosen on the paper's published metrics (`zoobench.store.reference`; the
CIFAR-10 ResNet-18 layout is tested cell by cell) and are the same for every zoo; a spec may fix any
of them (``[phases]``). The Hessian is reported beside the label, not used by it: in the paper it
separates the same regions as the train loss.

A cell with a diverged seed is labelled "diverged"; a cell lacking a metric the rule needs is
labelled "?". Every label carries the values and thresholds behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from zoobench.data import DATASETS
from zoobench.landscape.annotations import cell_table
from zoobench.landscape.registry import columns, phase_columns
from zoobench.spec import ZooSpec
from zoobench.store import ZooStore

PHASES = ("I", "II", "III", "IV-A", "IV-B", "diverged", "?")
MC_SHARE = 1 / 3  # of the zoo's typical |mc| (its 90th percentile): the barrier threshold
MC_FLOOR = 0.005  # half a point of error: below this no dip is a barrier
CKA_SHARE = 0.5  # of the way from the zoo's 10th to its 90th percentile CKA: "large" from here up


@dataclass(frozen=True)
class Rule:
    """The thresholds in force on one zoo's cells, each with how it was chosen."""

    train_loss: float | None
    mc: float | None
    cka: float | None
    how: dict[str, str] = field(default_factory=dict)

    def summary(self, reasons: bool = True) -> str:
        """The rule in one line, as every report shows it beside the labels; without `reasons` (how each
        threshold was chosen) short enough for a figure's panel title."""
        def why(name: str) -> str:
            return f" ({self.how[name]})" if reasons else ""

        loss = "train loss" if reasons else "loss"
        return (f"{loss} > {_g(self.train_loss)}{why('train_loss')}: I/II; mc < -{_g(self.mc)}{why('mc')}: barrier, "
                f"> {_g(self.mc)}: II; CKA >= {_g(self.cka)}{why('cka')}: IV-B")

    def label(self, row: dict[str, Any]) -> tuple[str, str]:
        """(phase, why) for one cell's metrics."""
        if row.get("diverged"):
            return "diverged", f"{int(row['diverged'])} seed(s) diverged"
        inputs = phase_columns()
        loss, mc, cka = (row.get(inputs.get(role, "")) for role in ("loss", "connectivity", "similarity"))
        missing = [name for name, value in (("train loss", loss), ("mc", mc)) if _missing(value)]
        if missing or self.train_loss is None or self.mc is None:
            return "?", f"missing {', '.join(missing) or 'a threshold'}"
        high = loss > self.train_loss
        loss_text = f"train loss {loss:.3g} {'>' if high else '<='} {self.train_loss:.3g}"
        if mc < -self.mc:
            return ("I" if high else "III"), f"{loss_text}, mc {mc:.3g} < -{self.mc:.3g} (barrier)"
        if high:
            return "II", f"{loss_text}, mc {mc:.3g} >= -{self.mc:.3g} (no barrier)"
        if mc > self.mc:
            return "II", f"{loss_text}, mc {mc:.3g} > {self.mc:.3g} (the ends are under-trained)"
        mc_text = f"|mc| {abs(mc):.3g} <= {self.mc:.3g}"
        if _missing(cka) or self.cka is None:
            return "?", f"{loss_text}, {mc_text}, missing CKA"
        if cka >= self.cka:
            return "IV-B", f"{loss_text}, {mc_text}, CKA {cka:.3g} >= {self.cka:.3g}"
        return "IV-A", f"{loss_text}, {mc_text}, CKA {cka:.3g} < {self.cka:.3g}"


def rule(spec: ZooSpec, table) -> Rule:
    """The rule for a zoo whose cells are `table` (a cell table): the spec's fixed thresholds where it
    sets them, else the defaults above, measured on the table."""
    inputs = phase_columns()
    values = {role: _finite(table[name]) if name in table else [] for role, name in inputs.items()}
    train_loss, loss_how = loss_threshold(spec, values.get("loss", []))
    how = {"train_loss": loss_how}
    if spec.phases.mc is not None:
        mc, how["mc"] = spec.phases.mc, "from the spec"
    elif values.get("connectivity"):
        typical = _quantile([abs(v) for v in values["connectivity"]], 0.9)
        mc = max(MC_FLOOR, MC_SHARE * typical)
        how["mc"] = f"a third of the zoo's typical |mc| {typical:.3g}" if mc > MC_FLOOR else "half a point of error"
    else:
        mc, how["mc"] = None, "no mc annotated"
    if spec.phases.cka is not None:
        cka, how["cka"] = spec.phases.cka, "from the spec"
    elif values.get("similarity"):
        low, high = _quantile(values["similarity"], 0.1), _quantile(values["similarity"], 0.9)
        cka = low + CKA_SHARE * (high - low)
        how["cka"] = f"middle of the zoo's CKA {low:.3g}-{high:.3g}"
    else:
        cka, how["cka"] = None, "no CKA annotated"
    return Rule(train_loss, mc, cka, how)


def loss_threshold(spec: ZooSpec, train_losses: list[float]) -> tuple[float | None, str]:
    """The train-loss threshold in force and how it was chosen."""
    if spec.phases.train_loss is not None:
        return spec.phases.train_loss, "from the spec"
    info = DATASETS.get(spec.data.dataset)
    if info.task == "classification":
        return 0.1 * math.log(info.num_outputs), f"0.1 x ln({info.num_outputs}), a tenth of chance"
    finite = [v for v in train_losses if v > 0]
    if not finite:
        return None, "no finite train losses"
    return math.sqrt(min(finite) * max(finite)), "geometric middle of the zoo's train losses"


def classify(spec: ZooSpec, table):
    """A cell table with each cell's phase and the reason for it, and the rule that gave them."""
    if table.empty:
        return table.assign(phase=[], reason=[]), rule(spec, table)
    the_rule = rule(spec, table)
    labels = [the_rule.label(row) for row in table.to_dict("records")]
    return table.assign(phase=[p for p, _ in labels], reason=[r for _, r in labels]), the_rule


def phase_table(zoo: ZooStore, epoch: int | None = None, source: str | None = None):
    """Every annotated cell with its metrics, phase and the reason for it (pandas)."""
    return classify(zoo.spec, cell_table(zoo, epoch=epoch, source=source))[0]


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


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _finite(series) -> list[float]:
    return [float(v) for v in series if isinstance(v, (int, float)) and math.isfinite(v)]


def _quantile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.quantile(values, q))


def _g(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"
