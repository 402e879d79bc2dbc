"""Pieces every training loop shares: the optimizer and its schedule, batches across epoch boundaries,
and per-epoch means of per-step values."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from zoobench.spec import TrainingSpec


def make_optimizer(model: nn.Module, training: TrainingSpec, total_steps: int):
    """The optimizer and its per-batch learning-rate schedule (None for a constant rate)."""
    params = model.parameters()
    if training.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=training.lr, momentum=training.momentum,
                                    weight_decay=training.weight_decay)
    elif training.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=training.lr, betas=(training.momentum, 0.999),
                                      weight_decay=training.weight_decay)
    else:
        optimizer = torch.optim.LBFGS(params, lr=training.lr, history_size=50, line_search_fn="strong_wolfe")
    if training.schedule == "constant":
        return optimizer, None
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=training.lr, total_steps=total_steps, pct_start=training.pct_start,
        cycle_momentum=training.cycle_momentum and training.optimizer != "lbfgs",
    )
    return optimizer, schedule


def endless(make_epoch: Callable[[], Iterable[Any]]) -> Iterator[Any]:
    """Batches across epoch boundaries, so a step budget need not be a whole number of passes."""
    while True:
        yield from make_epoch()


def epoch_means(losses: list[torch.Tensor], metrics: list[dict[str, torch.Tensor]],
                sizes: list[int]) -> list[dict[str, float]]:
    """Per seed, the batch-size-weighted mean over an epoch's steps of the loss and each metric.

    Each step contributes a tensor of shape (S,) (one value per seed trained at once) or () (one
    model); values stay on the device until here, where they are read once."""
    weights = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device) / sum(sizes)

    def mean(values: list[torch.Tensor]) -> list[float]:
        stacked = torch.stack(values).float()  # (steps,) or (steps, S)
        return (stacked * weights.view(-1, *[1] * (stacked.dim() - 1))).sum(0).reshape(-1).tolist()

    loss = mean(losses)
    names = {name: mean([m[name] for m in metrics]) for name in metrics[0]}
    return [{"loss": loss[s], **{name: values[s] for name, values in names.items()}} for s in range(len(loss))]
