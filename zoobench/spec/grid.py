"""Cells and models of a zoo's grid, with readable ids (``w64-bs128`` and ``w64-bs128-s0``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from zoobench.errors import UsageError
from zoobench.spec.schema import Axis, ZooSpec


@dataclass(frozen=True)
class GridCell:
    load: Any
    temperature: Any
    id: str


@dataclass(frozen=True)
class ModelKey:
    cell: GridCell
    seed: int

    @property
    def id(self) -> str:
        return f"{self.cell.id}-s{self.seed}"


def value_label(value: Any) -> str:
    """An axis value as ids and labels write it: 4, 0.1, 1e-05."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def cell(spec: ZooSpec, load: Any, temperature: Any) -> GridCell:
    load_axis, temperature_axis = spec.grid.load, spec.grid.temperature
    return GridCell(load, temperature,
                f"{load_axis.short}{value_label(load)}-{temperature_axis.short}{value_label(temperature)}")


def cells(spec: ZooSpec, loads: Sequence[Any] | None = None, temperatures: Sequence[Any] | None = None) -> list[GridCell]:
    """The grid's cells, optionally restricted to some loads and temperatures (each must be in the grid)."""
    chosen_loads = _restrict(spec.grid.load, loads, "load")
    chosen_temperatures = _restrict(spec.grid.temperature, temperatures, "temperature")
    return [cell(spec, l, t) for t in chosen_temperatures for l in chosen_loads]


def hot_first(axis: Axis) -> list[Any]:
    """Temperature values hottest first (small batches, large learning rates), as heatmaps show them."""
    return sorted(axis.values, reverse=not axis.field.endswith("batch_size"))


def model_keys(
    spec: ZooSpec,
    loads: Sequence[Any] | None = None,
    temperatures: Sequence[Any] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[ModelKey]:
    chosen_seeds = list(spec.grid.seeds) if seeds is None else [int(s) for s in seeds]
    unknown = [s for s in chosen_seeds if s not in spec.grid.seeds]
    if unknown:
        raise UsageError(f"seed {unknown[0]} is not in the grid of {spec.name}; valid: "
                         f"{', '.join(map(str, spec.grid.seeds))}")
    return [ModelKey(c, s) for c in cells(spec, loads, temperatures) for s in chosen_seeds]


def model_spec(spec: ZooSpec, key: ModelKey) -> ZooSpec:
    """The spec with the grid axes set to this model's cell: its complete training recipe."""
    return spec.with_overrides({spec.grid.load.field: key.cell.load, spec.grid.temperature.field: key.cell.temperature})


def _restrict(axis: Axis, chosen: Sequence[Any] | None, name: str) -> list[Any]:
    if chosen is None:
        return list(axis.values)
    by_number = {float(v): v for v in axis.values}
    picked = []
    for value in chosen:
        try:
            picked.append(by_number[float(value)])
        except (KeyError, ValueError):
            raise UsageError(
                f"{value} is not a {name} value of this grid ({axis.field}); valid: "
                f"{', '.join(map(value_label, axis.values))}"
            ) from None
    return picked
