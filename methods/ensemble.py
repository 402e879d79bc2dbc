"""Ensemble: average the outputs (logits) of a cell's seeds and compare the ensemble to its members.

The averaged model is a plain module evaluated by the cell's own `evaluate`, so every task works
unchanged: classification reports loss and accuracy of the averaged logits, the PINN the error of
the averaged solution. Averaging logits (not probabilities) keeps the ensemble a single network
output, the quantity a phase diagram of "how different are the seeds' functions" is about.

Keys, for each metric m that `cell.evaluate` returns (loss, acc; loss, rel_l2 for the PINN):
``ensemble_<m>`` and ``member_<m>`` (mean over members) and ``best_member_<m>`` (the member with the
best accuracy, or the lowest rel_l2); ``gain`` (the headline) = `improvement` of the ensemble over
the mean member, ensemble_acc - member_acc for classification and member_rel_l2 - ensemble_rel_l2
for the PINN (positive: the ensemble is better, in the task's own quality, never a loss whose
scale differs per task), and ``gain_over_best``, the same against the best member. A task that
reports neither has no gain. ``models`` is the number of members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import nn

from zoobench.method import Cell, Context, Method, Range, ZoobenchError, improvement, seed_mean


class MeanOutput(nn.Module):
    """One module whose output is the mean of its members' outputs (evaluated like any model)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(*inputs) for member in self.members]).mean(0)


class Ensemble(Method):
    name = "ensemble"
    version = "2"
    headline = "gain"
    higher_is_better = True
    key_metrics = ("member_acc", "ensemble_acc", "member_rel_l2", "ensemble_rel_l2")

    @dataclass(frozen=True)
    class Config:
        members: Annotated[int, Range(0)] = 0  # ensemble the first n healthy seeds (0: all); for ensemble-size studies
        split: Literal["test", "train"] = "test"  # the split the ensemble and its members are evaluated on

    def run(self, cell: Cell, ctx: Context) -> dict[str, float]:
        wanted = ctx.config.members or len(cell.model_ids)
        if len(cell.model_ids) < max(2, wanted):
            raise ZoobenchError(f"ensemble: cell {cell.id} has {len(cell.model_ids)} healthy seed(s), needs "
                                f"{max(2, wanted)} ({len(cell.diverged)} diverged)")
        models = [cell.model(model_id) for model_id in cell.model_ids[:wanted]]
        members = [cell.evaluate(model, ctx.config.split) for model in models]
        ensemble = cell.evaluate(MeanOutput(models), ctx.config.split)
        mean_member = seed_mean(members)
        result: dict[str, float] = {"models": float(len(models))}
        result.update({f"ensemble_{metric}": value for metric, value in ensemble.items()})
        result.update({f"member_{metric}": value for metric, value in mean_member.items()})
        gain = improvement(mean_member, ensemble)
        if gain is not None:
            best = max(members, key=lambda member: improvement(members[0], member))  # improves most on the first
            result.update({f"best_member_{metric}": value for metric, value in best.items()})
            result["gain"] = gain
            result["gain_over_best"] = improvement(best, ensemble)
        return result
