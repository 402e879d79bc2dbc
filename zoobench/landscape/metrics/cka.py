"""CKA between the seeds of a cell: linear CKA of their logits on fixed test examples, averaged over
seed pairs (`zoobench.landscape.cka`).

Two estimators, because the paper's published CKA and zoobench's default are not the same number:
"unbiased" (default) is the unbiased-HSIC CKA on one batch of `samples` examples; "paper" is what
the Phase Transition Model Zoo computed (PTMZ ``CKA.py``: biased linear CKA per batch of 128 test
images, averaged over 10 batches and the seed pairs), which reads higher because the biased
estimator is inflated at small n. Compare like with like: `zoo compare-reference` against the
published metrics wants ``[annotation.cka] estimator = "paper"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from zoobench.landscape.registry import Column, Metric


@dataclass(frozen=True)
class CKASettings:
    estimator: Literal["unbiased", "paper"] = "unbiased"
    samples: int = 512  # unbiased: fixed test examples whose logits are compared
    batches: int = 10  # paper: this many batches ...
    batch_size: int = 128  # ... of this many test examples, one biased CKA per batch
    seed: int = 0

    def describe(self) -> str:
        if self.estimator == "paper":
            return f"biased linear CKA of the logits, {self.batches} batches of {self.batch_size} test images (paper)"
        return f"unbiased linear CKA of the logits, {self.samples} test examples"


def seed_similarity(models: list[Any], data: Any, settings: CKASettings) -> dict[str, float | None]:
    import torch

    from zoobench.landscape.cka import mean_pairwise_cka

    if len(models) < 2:
        return {"cka": None, "cka_pairs": 0}
    if settings.estimator == "paper":
        batches = [inputs for inputs, *_ in data.fixed_batches("test", settings.batches, settings.batch_size,
                                                                settings.seed)]
    else:
        batches = [data.fixed_batches("test", 1, settings.samples, settings.seed)[0][0]]
    means, per_batch = [], []
    with torch.no_grad():
        for inputs in batches:
            logits = [model.eval()(inputs) for model in models]
            mean, pairs = mean_pairwise_cka(logits, unbiased=settings.estimator == "unbiased")
            means.append(mean)
            per_batch.append(pairs)
    per_pair = [sum(values) / len(values) for values in zip(*per_batch)]
    return {"cka": sum(means) / len(means), "cka_pairs": len(per_pair), "pairs": [{"cka": v} for v in per_pair]}


METRIC = Metric(
    "cka", "cell", seed_similarity, settings=CKASettings, version=2,  # 2: each seed pair's value is kept
    columns=(Column("cka", "CKA between seeds", higher_is_better=None, sheet=True, target="cka", phase="similarity"),),
    description="linear CKA between the seeds' logits (unbiased HSIC, or the paper's biased per-batch estimator)",
)
