"""The statistics a paper claim is tested with, each a number per bootstrap resample of a zoo's cells.

A statistic reads `columns` of a per-cell table, uses the cells of its `phases`, says in words what it
is (`describe()`), which groups of cells it compares (`groups(phase)`) and why it cannot be computed
(`problem(phase)`, or None); called on {column: (resamples, cells) array} with the cells' phases
(fixed positions: the bootstrap resamples within a phase) and the rule's train-loss threshold, it
gives one value per resample. `zoobench.reports.claims` states the paper's findings with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

LABELLED = ("I", "II", "III", "IV-A", "IV-B")  # the phases a claim can compare
IV = ("IV-A", "IV-B")
MIN_CELLS = 2  # per compared group: a single cell has no spread to resample


@dataclass(frozen=True)
class Quantity:
    """A number per cell: one reported column, or with `complement` 1 minus it (the quality of a task
    measured by an error, as prune reads the PINN's: 1 - relative L2 error)."""

    name: str
    complement: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def label(self) -> str:
        return f"(1 - {self.name})" if self.complement else self.name

    def of(self, data: Mapping[str, Any]):
        """Its values from (resamples, cells) arrays by column."""
        return 1 - data[self.name] if self.complement else data[self.name]


def _group(phases: Sequence[str]) -> str:
    """A phase group for people: ("IV-A", "IV-B") -> "IV", ("I", "II", "III") -> "I/II/III"."""
    names = [p for p in phases if p not in IV]
    if set(IV) <= set(phases):
        names.append("IV")
    else:
        names += [p for p in phases if p in IV]
    return "/".join(names)


def _mean(values, columns):
    """Row means of a (resamples, cells) array over the given cell positions."""
    return values[:, columns].mean(axis=1)


def _too_few(groups: list[tuple[str, int]]) -> str | None:
    """Why a statistic over these (group, cells) cannot be bootstrapped, or None."""
    for name, count in groups:
        if count < MIN_CELLS:
            return f"{'no' if count == 0 else f'only {count}'} {name} cell ({MIN_CELLS} needed)"
    return None


@dataclass(frozen=True)
class Contrast:
    """Mean of `quantity` over the cells of the phases `first` minus the mean over the cells of
    `second`; with `best`, minus the best single phase of `second` (the highest phase mean)."""

    quantity: Quantity
    first: tuple[str, ...]
    second: tuple[str, ...]
    best: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.quantity.columns

    @property
    def phases(self) -> tuple[str, ...]:
        return self.first + self.second

    def describe(self) -> str:
        other = f"best of {_group(self.second)}" if self.best else _group(self.second)
        return f"mean {self.quantity.label}: {_group(self.first)} - {other}"

    def groups(self, phase) -> list[tuple[str, int]]:
        return [(_group(g), int(sum(p in g for p in phase))) for g in (self.first, self.second)]

    def problem(self, phase) -> str | None:
        return _too_few(self.groups(phase))

    def __call__(self, data: Mapping[str, Any], phase, loss_threshold: float | None):
        import numpy as np

        values = self.quantity.of(data)
        first = np.flatnonzero(np.isin(phase, self.first))
        if not self.best:
            return _mean(values, first) - _mean(values, np.flatnonzero(np.isin(phase, self.second)))
        present = [p for p in self.second if (phase == p).any()]
        return _mean(values, first) - np.max([_mean(values, np.flatnonzero(phase == p)) for p in present], axis=0)


@dataclass(frozen=True)
class AbsMean:
    """|mean of `quantity`| over the cells of `phases`: how far from zero the phases' effect is."""

    quantity: Quantity
    phases: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.quantity.columns

    def describe(self) -> str:
        return f"|mean {self.quantity.label}| over {_group(self.phases)}"

    def groups(self, phase) -> list[tuple[str, int]]:
        return [(_group(self.phases), int(sum(p in self.phases for p in phase)))]

    def problem(self, phase) -> str | None:
        return _too_few(self.groups(phase))

    def __call__(self, data: Mapping[str, Any], phase, loss_threshold: float | None):
        import numpy as np

        return np.abs(_mean(self.quantity.of(data), np.flatnonzero(np.isin(phase, self.phases))))


@dataclass(frozen=True)
class TopShare:
    """Share of the top `top` fraction of cells by test quality (at least one cell) whose train loss is at
    most the phase rule's train-loss threshold, i.e. that lie inside the low-train-loss region. Quality is
    `accuracy`: a column where higher is better, or with `error` one where lower is."""

    top: float = 0.1
    accuracy: str = "test_acc"
    loss: str = "train_loss"
    error: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.accuracy, self.loss)

    @property
    def phases(self) -> tuple[str, ...]:
        return LABELLED

    def describe(self) -> str:
        best = f"lowest {self.accuracy}" if self.error else self.accuracy
        return f"share of the top {self.top:.0%} {best} cells with {self.loss} <= the rule's threshold"

    def groups(self, phase) -> list[tuple[str, int]]:
        return [("top", self._count(len(phase))), ("all", len(phase))]

    def _count(self, cells: int) -> int:
        return max(1, round(self.top * cells))

    def problem(self, phase) -> str | None:
        return _too_few([("labelled", len(phase))])

    def __call__(self, data: Mapping[str, Any], phase, loss_threshold: float | None):
        import numpy as np

        accuracy, loss = data[self.accuracy], data[self.loss]
        order = np.argsort(accuracy if self.error else -accuracy, axis=1, kind="stable")
        best = order[:, :self._count(accuracy.shape[1])]
        return (np.take_along_axis(loss, best, axis=1) <= loss_threshold).mean(axis=1)


Statistic = Contrast | AbsMean | TopShare
