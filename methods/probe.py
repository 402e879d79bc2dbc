"""probe: how much of a model's quality, loss landscape and phase can be read off its weights alone.

Each model is described by per-layer weight statistics (for every parameter tensor: mean, variance
and the 1/25/50/75/99% quantiles, as in Unterthiner et al. 2020 and the PTMZ paper's Table 1). A ridge
probe on them predicts every target the metric catalogue declares (test accuracy, generalization gap,
CKA, log Hessian trace, mode connectivity); beside it runs a StatNet-style baseline, gradient-boosted
trees on the same statistics, so that a gain of a new weight-space learner can be told from a gain
any non-linear model on simple statistics would have. Scores are R^2 (the paper's) and Kendall's tau
(the field's: NFN and Unterthiner et al. rank predictors by it), and the phase itself is a target
(balanced accuracy), since it is what a phase zoo adds.

Units are splits of the zoo's cells (seeds of one cell are near-copies and never sit on both sides):
random ones measure interpolation within the zoo; `cross_phase` (train on phases I-III, test on IV)
and `cross_load` (train on the smaller models, test on the larger half) are new with phase zoos and
measure extrapolation to a regime the probe never saw. Their numbers answer different questions, so
reports summarise each kind of unit on its own. Regularisation is chosen on validation cells, never
on test cells. On cross_phase `phase_bacc` is NaN: training never sees Phase IV, so no classifier can
name it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Mapping

import numpy as np

from zoobench.method import (Context, Method, Range, Split, UsageError, Zoo, ZoobenchError, landscape_targets,
                             random_split, standard_splits)
from zoobench.methods.probe_scores import score_split

if TYPE_CHECKING:
    import torch

QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm state, not weights


class Probe(Method):
    name = "probe"
    version = "2"
    # Kendall's tau, as the field ranks predictors: R^2 on a test part whose cells all score alike
    # (a random split that drew only well-trained cells) is hugely negative however well it ranks them
    headline = "tau_mean"
    higher_is_better = True
    key_metrics = ("r2_mean", "gbt_tau_mean", "gbt_r2_mean", "phase_bacc")
    needs = ("hessian",)
    scope = "zoo"

    @dataclass(frozen=True)
    class Config:
        splits: Annotated[int, Range(1)] = 5  # random units: independent random splits of the cells
        val_fraction: float = 0.2  # of the cells in a random split, at least one; chooses alpha and C
        test_fraction: float = 0.2  # of the cells in a random split, at least one; the scores are measured here
        alphas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # ridge penalties tried
        cs: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0)  # inverse penalties of the phase classifier tried
        leaves: tuple[int, ...] = (3, 5, 10, 20)  # smallest leaf sizes (models) of the boosted trees tried
        seed: int = 0  # draws the splits (with a random split's index)

    def validate(self, config: Probe.Config) -> None:
        for name in ("alphas", "cs", "leaves"):
            values = getattr(config, name)
            if not values or min(values) <= 0:
                raise UsageError(f"{name} must be positive, got {list(values)}")
        if not (0 < config.val_fraction < 1 and 0 < config.test_fraction < 1
                and config.val_fraction + config.test_fraction < 1):
            raise UsageError(f"val_fraction and test_fraction must lie in (0, 1) and leave cells to train on, got "
                             f"{config.val_fraction} and {config.test_fraction}")

    def units(self, config: Probe.Config) -> list[str]:
        return [*(f"random{i}" for i in range(config.splits)), *CROSS]

    def run(self, zoo: Zoo, ctx: Context) -> dict[str, float]:
        config = ctx.config
        units = self.units(config)
        if zoo.id not in units:
            raise ZoobenchError(f"probe: unknown split '{zoo.id}'; with splits={config.splits} the splits "
                                f"are {', '.join(units)}")
        table = zoo_table(zoo)
        split = unit_split(zoo.id, table, config)
        return score_split(table.features, table.targets, table.phases, table.cells, split, config.alphas, config.cs,
                           config.leaves)


CROSS = ("cross_phase", "cross_load")  # the extrapolating units, after the random ones
CROSS_NEEDS = {"cross_phase": "cells of phases I-III to train on and of Phase IV (IV-A, IV-B) to test on",
               "cross_load": "two load values or more"}


@dataclass(frozen=True)
class ZooTable:
    """Per model (rows in the zoo's cell order): its statistics, each target, its cell, load and phase."""

    features: np.ndarray  # (models, statistics)
    targets: dict[str, np.ndarray]  # target -> (models,), NaN where missing
    cells: list[str]
    loads: list[float]
    phases: list[str | None]


def unit_split(unit: str, table: ZooTable, config: Probe.Config) -> Split:
    """The unit's split of the models, by cell; a `ZoobenchError` saying why when the zoo has none."""
    if unit in CROSS:
        found = standard_splits(table.cells, table.loads, table.phases, seed=config.seed, of="cell")
        if unit not in found:
            have = sorted({p for p in table.phases if isinstance(p, str)}) or ["none"]
            raise ZoobenchError(f"probe: no {unit} split on this zoo: it needs {CROSS_NEEDS[unit]} (phases: "
                                f"{', '.join(have)}; loads: {', '.join(f'{v:g}' for v in sorted(set(table.loads)))})")
        return found[unit]
    index = int(re.fullmatch(r"random(\d+)", unit).group(1))
    fractions = (1 - config.val_fraction - config.test_fraction, config.val_fraction, config.test_fraction)
    split = random_split(table.cells, [config.seed, index], fractions, unit, of="cell")
    if not (len(split.train) and len(split.val) and len(split.test)):
        raise ZoobenchError(f"probe: {len(set(table.cells))} cells with models are too few for a train, validation "
                            f"and test part (test_fraction={config.test_fraction}, "
                            f"val_fraction={config.val_fraction})")
    return split


def layer_statistics(state: Mapping[str, torch.Tensor]) -> np.ndarray:
    """A model's features: mean, variance and quantiles of each parameter tensor, in state-dict order."""
    rows = []
    for name, tensor in state.items():
        if name.rsplit(".", 1)[-1] in BUFFERS or not tensor.is_floating_point():
            continue
        values = tensor.detach().double().flatten().cpu().numpy()
        rows.append([values.mean(), values.var(), *np.quantile(values, QUANTILES)])
    return np.asarray(rows, dtype=np.float64).reshape(-1)


def zoo_table(zoo: Zoo) -> ZooTable:
    """Every healthy model of the zoo: its statistics, targets, cell, load and phase.

    A per-model target (test accuracy, gap, log Hessian trace) is the model's own value; a per-cell
    one (CKA, mc) is its cell's, the same for every seed."""
    declared = landscape_targets()
    rows, targets, names = [], {target: [] for target, _, _ in declared}, None
    cells, loads, phases = [], [], []
    for cell in zoo.cells:
        for model_id in cell.model_ids:
            state = cell.state(model_id)
            names = names or list(state)
            if list(state) != names:
                raise ZoobenchError(f"probe: model {model_id} has parameters {sorted(state)}, other models of the "
                                    f"zoo have {sorted(names)}; the probe needs one architecture family")
            rows.append(layer_statistics(state))
            per_model = cell.model_annotations.get(model_id, {})
            for target, column, model_level in declared:
                targets[target].append(_number((per_model if model_level else cell.annotations).get(column)))
            cells.append(cell.id)
            loads.append(float(cell.load))
            phases.append(cell.annotations.get("phase"))
    if not rows:
        raise ZoobenchError("probe: the zoo has no healthy models")
    return ZooTable(np.stack(rows), {t: np.asarray(v) for t, v in targets.items()}, cells, loads, phases)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan
