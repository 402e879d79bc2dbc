"""Curvature of the training loss: the Hessian's top eigenvalue (Lanczos) and trace (Hutch++ or
Hutchinson) on fixed clean training batches, from Hessian-vector products (`zoobench.landscape.hessian`),
with the number of products each estimate used."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from zoobench.landscape.registry import Column, Metric


@dataclass(frozen=True)
class HessianSettings:
    batches: int = 10  # fixed, non-augmented training batches (the paper's code: 10 x 64)
    batch_size: int = 64
    max_hvps: int = 100  # budget per estimate (top eigenvalue, trace)
    tol: float = 1e-3
    trace: Literal["hutch++", "hutchinson"] = "hutch++"
    seed: int = 0


def curvature(model: Any, data: Any, settings: HessianSettings) -> dict[str, float | None]:
    from zoobench.landscape.hessian import hessian_metrics

    batches = data.fixed_batches("train", settings.batches, settings.batch_size, settings.seed)
    values = hessian_metrics(model.eval(), lambda m, batch: data.loss(m, batch)[0], batches, trace=settings.trace,
                             max_hvps=settings.max_hvps, tol=settings.tol, seed=settings.seed,
                             concatenate=getattr(data, "examplewise_loss", False))
    trace = values["hessian_trace"]
    return {**values, "hessian_log_trace": math.log(trace) if trace > 0 else None}


METRIC = Metric(
    "hessian", "model", curvature, settings=HessianSettings, version=2,  # 2: per-model log trace
    columns=(
        Column("hessian_log_trace", "log Hessian trace", higher_is_better=False, sheet=True,
               target="log_hessian_trace"),
        Column("hessian_top_eigenvalue", "Hessian top eigenvalue", higher_is_better=False),
        Column("hessian_trace", "Hessian trace", higher_is_better=False),
    ),
    description="top eigenvalue and trace of the training-loss Hessian",
)
