"""CKA between the seeds of a cell: linear CKA (unbiased HSIC) of their logits on fixed test examples,
averaged over seed pairs (`zoobench.landscape.cka`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoobench.landscape.registry import Column, Metric


@dataclass(frozen=True)
class CKASettings:
    samples: int = 512  # fixed test examples whose logits are compared
    seed: int = 0


def seed_similarity(models: list[Any], data: Any, settings: CKASettings) -> dict[str, float | None]:
    import torch

    from zoobench.landscape.cka import mean_pairwise_cka

    if len(models) < 2:
        return {"cka": None, "cka_pairs": 0}
    inputs = data.fixed_batches("test", 1, settings.samples, settings.seed)[0][0]
    with torch.no_grad():
        logits = [model.eval()(inputs) for model in models]
    mean, pairs = mean_pairwise_cka(logits)
    return {"cka": mean, "cka_pairs": len(pairs)}


METRIC = Metric(
    "cka", "cell", seed_similarity, settings=CKASettings,
    columns=(Column("cka", "CKA between seeds", higher_is_better=None, sheet=True, target="cka", phase="similarity"),),
    description="linear CKA (unbiased HSIC) between the seeds' logits",
)
