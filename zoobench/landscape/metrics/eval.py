"""Clean evaluation: train and test loss and accuracy (or the task's own metrics) without augmentation,
and the generalization gap. The running train loss logged during an augmented epoch is not this."""

from __future__ import annotations

from typing import Any

from zoobench.landscape.registry import Column, Metric


def evaluate(model: Any, data: Any, settings: Any) -> dict[str, float]:
    train, test = data.evaluate(model, "train"), data.evaluate(model, "test")
    values = {**{f"train_{k}": v for k, v in train.items()}, **{f"test_{k}": v for k, v in test.items()}}
    if "acc" in train and "acc" in test:
        values["gap"] = train["acc"] - test["acc"]  # generalization gap, clean
    return values


METRIC = Metric(
    "eval", "model", evaluate,
    columns=(
        Column("train_loss", "train loss", higher_is_better=False, log=True, sheet=True, phase="loss"),
        Column("test_acc", "test accuracy", higher_is_better=True, sheet=True, target="test_acc"),
        Column("gap", "generalization gap (train - test acc)", higher_is_better=False, sheet=True, target="gap"),
        Column("train_acc", "train accuracy", higher_is_better=True),
        Column("test_loss", "test loss", higher_is_better=False),
        Column("test_rel_l2", "relative L2 test error", higher_is_better=False, log=True, sheet=True),
    ),
    description="clean train/test loss and accuracy, generalization gap",
)
