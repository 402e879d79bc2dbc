"""Mode connectivity between the seeds of a cell: a trained quadratic Bezier curve and the straight
line between every pair, mc = 1/2 (L(0) + L(1)) - L(t*) on the train error (`zoobench.landscape.
connectivity`); mc < 0 is a barrier, mc > 0 means the ends are under-trained."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from zoobench.landscape.registry import Column, Metric


@dataclass(frozen=True)
class MCSettings:
    epochs: int = 10  # Bezier curve training (the paper's code: 10 epochs, SGD lr 0.1)
    lr: float = 0.1
    batch_size: int = 128
    t_values: int = 11  # points evaluated on the curve
    alphas: int = 25  # points on the straight line between the seeds
    seed: int = 0


def connectivity(models: list[Any], data: Any, settings: MCSettings) -> dict[str, float | None]:
    import torch

    from zoobench.landscape.connectivity import bezier_curve_mc, linear_path
    from zoobench.landscape.weightspace import recalibrate_batchnorm

    calibration = data.fixed_batches("train", 10, settings.batch_size, settings.seed)

    def recalibrate(model) -> None:
        recalibrate_batchnorm(model, calibration)

    def error(model) -> float:
        result = data.evaluate(model.eval(), "train")
        return 1 - result["acc"] if "acc" in result else result["loss"]

    generator = torch.Generator().manual_seed(settings.seed)
    curves, lines = [], []
    for a, b in itertools.combinations(models, 2):
        lines.append(linear_path(a, b, error, recalibrate, settings.alphas)["linear_mc"])
        curves.append(bezier_curve_mc(a, b, lambda m, batch: data.loss(m, batch)[0],
                                      lambda: data.batches(settings.batch_size, generator, None), error,
                                      recalibrate, epochs=settings.epochs, lr=settings.lr,
                                      t_values=settings.t_values, seed=settings.seed)["mc"])
    return {"mc": _mean(curves), "linear_mc": _mean(lines), "mc_pairs": len(curves),
            "pairs": [{"mc": curve, "linear_mc": line} for curve, line in zip(curves, lines)]}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


METRIC = Metric(
    "mc", "cell", connectivity, settings=MCSettings, version=2,  # 2: each seed pair's value is kept
    columns=(
        Column("mc", "mode connectivity mc (< 0: barrier)", signed=True, sheet=True, target="mc",
               phase="connectivity"),
        Column("linear_mc", "linear-path mode connectivity", signed=True),
    ),
    description="Bezier-curve and linear-path mode connectivity between the seeds",
)
