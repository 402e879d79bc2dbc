"""An external zoobench method: the mean L2 norm of a cell's weights, and its test accuracy.

Installed packages register methods under the entry-point group ``zoobench.methods``; see this
folder's pyproject.toml.
"""

from dataclasses import dataclass

import torch

from zoobench.method import Method


class WeightNorm(Method):
    name = "weightnorm"
    version = "2"
    headline = "weight_norm"
    higher_is_better = False

    @dataclass(frozen=True)
    class Config:
        power: float = 2.0

    def run(self, cell, ctx):
        norms = []
        for model_id in cell.model_ids:
            weights = torch.cat([t.flatten().float() for t in cell.state(model_id).values()])
            norms.append(weights.abs().pow(ctx.config.power).sum().pow(1 / ctx.config.power).item())
        accuracies = [cell.evaluate(model)["acc"] for model in cell.models()]
        return {"weight_norm": sum(norms) / len(norms), "test_acc": sum(accuracies) / len(accuracies)}
