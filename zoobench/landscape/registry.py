"""The catalogue of loss-landscape metrics: one record per metric, read by everything that shows one.

A `Metric` says what it computes (its function, per model or per cell), how it is configured (a
settings dataclass, filled from a spec's ``[annotation.<name>]``), what it produces (its `Column`s:
direction, sign, colour scale, whether it is a panel of the zoo sheet or a prediction target of
weight-space methods) and which column feeds the phase rule. Annotating, the phase rule, the cell
views methods receive, summaries, figures, comparisons and the weight-statistics probe all read
these records, so adding a metric is one module with its record and one `METRICS.add`.

Built-in records are registered as lazy ``"module:METRIC"`` targets and their compute functions
import torch only when they run, so reading the catalogue (validating a spec, listing columns)
stays cheap. Iterating over `METRICS` gives the registration order, which is the order metrics are
annotated in and shown on the zoo sheet.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping

from zoobench.errors import ZoobenchError
from zoobench.registry import Registry

PhaseRole = Literal["loss", "connectivity", "similarity"]  # what the phase rule (Yang et al. 2021) reads


@dataclass(frozen=True)
class Column:
    """One number a metric produces (per model and as the cell's seed mean, or per cell)."""

    name: str
    title: str  # for people: panel titles and summaries
    higher_is_better: bool | None = None  # None: no direction (mc: 0 is connected, either sign is a finding)
    signed: bool = False  # a diverging colour map centred at 0
    log: bool = False  # a log colour scale (positive values over decades)
    sheet: bool = False  # one panel of the zoo sheet
    target: str | None = None  # its name as a prediction target of weight-space methods (probe: r2_<target>)
    phase: PhaseRole | None = None  # the input of the phase rule it provides


@dataclass(frozen=True)
class NoSettings:
    """The settings of a metric without options."""


@dataclass(frozen=True)
class Metric:
    """A loss-landscape metric.

    `compute` (or its ``"module:function"`` target) is called with the models of one cell at the
    annotated epoch, their task data and the settings: per model, ``compute(model, data, settings)``
    for each healthy model (the cell gets the seed mean of every value); per cell, ``compute(models,
    data, settings)`` with all healthy models in seed order. It returns a flat dict of numbers
    (non-finite ones are stored as missing); a cell metric that compares pairs of seeds may add
    ``"pairs"``, one flat dict per pair of its models in ``itertools.combinations`` order, stored
    beside the cell's values (from them `zoobench.landscape.stability` tells how much a cell's phase
    hangs on one seed).
    """

    name: str
    scope: Literal["model", "cell"]
    compute: Callable[..., dict[str, Any]] | str
    columns: tuple[Column, ...] = ()
    settings: type = NoSettings  # a frozen dataclass whose fields all have defaults
    version: int = 1  # part of each stored annotation's key: bump it when the numbers change
    description: str = ""

    def function(self) -> Callable[..., dict[str, Any]]:
        if isinstance(self.compute, str):
            from zoobench.registry import load_target

            return load_target(self.compute, f"metric '{self.name}'")
        return self.compute


def _check(name: str, metric: Any) -> None:
    if not isinstance(metric, Metric) or metric.name != name:
        raise ZoobenchError(f"metric '{name}' is registered as {metric!r}, not a Metric named '{name}'")
    if not dataclasses.is_dataclass(metric.settings) or any(
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            for f in dataclasses.fields(metric.settings)):
        raise ZoobenchError(f"metric '{name}': settings must be a dataclass whose fields all have defaults")


METRICS: Registry[Metric] = Registry("metric", check=_check)
for _name in ("eval", "cka", "hessian", "mc"):
    METRICS.add(_name, f"zoobench.landscape.metrics.{_name}:METRIC")


def metrics() -> list[Metric]:
    """Every registered metric, in registration order."""
    return [METRICS.get(name) for name in METRICS]


def columns() -> list[Column]:
    """Every declared column of every metric, in registration order."""
    return [column for metric in metrics() for column in metric.columns]


def column(name: str) -> Column | None:
    """The declared column of this name, or None (a value no metric declares, e.g. a method's)."""
    return next((c for c in columns() if c.name == name), None)


def phase_columns() -> dict[str, str]:
    """Phase-rule input -> the column that provides it, e.g. {"loss": "train_loss", ...}."""
    found: dict[str, str] = {}
    for c in columns():
        if c.phase is not None:
            if c.phase in found:
                raise ZoobenchError(f"columns '{found[c.phase]}' and '{c.name}' both claim the phase input "
                                    f"'{c.phase}'; one metric must provide it")
            found[c.phase] = c.name
    return found


def phase_metrics() -> tuple[str, ...]:
    """The metrics the phase rule needs (every cell-labelling run computes them)."""
    return tuple(m.name for m in metrics() if any(c.phase for c in m.columns))


def per_model_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in metrics() if m.scope == "model")


def targets() -> list[tuple[str, Column, Metric]]:
    """(target name, column, metric) of every column that is a prediction target of weight-space methods."""
    return [(c.target, c, m) for m in metrics() for c in m.columns if c.target is not None]


def seed_mean(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The mean over seeds of every numeric value (how a per-model metric's cell value is formed, and
    what methods report per cell). Missing values (None) are left out; a value that is not finite in
    some seed makes the mean NaN, which is stored as missing."""
    rows = list(rows)
    names = sorted({name for values in rows for name in values})
    mean: dict[str, float] = {}
    for name in names:
        values = [v[name] for v in rows if isinstance(v.get(name), (int, float))]
        mean[name] = sum(values) / len(values) if values and all(map(math.isfinite, values)) else math.nan
    return mean

