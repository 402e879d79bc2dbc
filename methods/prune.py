"""Prune: unstructured magnitude pruning over a sparsity grid, and how far a cell's models can be
pruned before their accuracy drops.

Only the weights of Linear and Conv layers are pruned (biases and normalisation layers are few
parameters and not what "sparsity" means for a network), with `torch.nn.utils.prune`: "global"
ranks all those weights together (layers may end up with very different sparsities), "layer"
removes the same fraction from every layer. Optional masked retraining goes through `cell.fit`,
the loop every method shares, so budgets are comparable; the pruning masks stay in place while it
trains. BatchNorm statistics are re-estimated after pruning, which changed every activation; an
untouched model (sparsity 0 without retraining) is evaluated as stored, so it reproduces the dense
model exactly.

Keys, for each metric m that `cell.evaluate` returns (loss and acc, or loss and rel_l2 for the
PINN), as means over the cell's seeds: ``dense_<m>`` and ``<m>_s<sparsity>`` (e.g. acc_s0.5).
The headline ``max_sparsity`` is the sparsity just before the first drop beyond the margin: walk
the sorted grid and keep the last sparsity whose seed-mean accuracy is >= dense_acc - margin,
stopping at the first one that is not (0.0 when already the smallest fails). Because the walk
stops at the first drop, a lucky recovery at a higher sparsity does not count. The reference is
always the stored dense model, so retraining shows up as a higher max_sparsity. It needs
accuracy, so tasks without it report the per-sparsity metrics and no headline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Literal

from torch import nn
from torch.nn.utils import prune

from zoobench.method import Cell, Context, Method, Range, UsageError, ZoobenchError, seed_mean

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(layer, "weight") for every Linear and Conv layer whose forward the model calls.

    MultiheadAttention reads its out_proj's weight directly, bypassing the hook that re-applies the
    mask, so a masked out_proj would go stale during retraining: it is left dense.
    """
    skipped = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE) and id(m) not in skipped]


def prune_model(model: nn.Module, sparsity: float, mode: Literal["global", "layer"]) -> nn.Module:
    """Prune `model` in place to `sparsity` (the fraction of prunable weights set to zero, rounded
    as torch does: round(sparsity * n) over all of them, or per layer) and return it."""
    layers = prunable(model)
    if mode == "global":
        prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=sparsity)
    else:
        for layer, name in layers:
            prune.l1_unstructured(layer, name, amount=sparsity)
    return model


class Prune(Method):
    name = "prune"
    version = "1"
    headline = "max_sparsity"
    higher_is_better = True
    key_metrics = ("dense_acc", "acc_s0.5", "acc_s0.9")

    @dataclass(frozen=True)
    class Config:
        sparsities: tuple[Annotated[float, Range(0.0, 1.0)], ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                                                                     0.95, 0.99)
        mode: Literal["global", "layer"] = "global"
        margin: Annotated[float, Range(0.0)] = 0.01  # the absolute accuracy drop from dense that counts as "dropped"
        retrain_steps: Annotated[int, Range(0)] = 0  # masked retraining steps per pruned model (0: none)
        retrain_lr: Annotated[float, Range(0.0)] = 0.01

    def validate(self, config: Prune.Config) -> None:
        if not config.sparsities:
            raise UsageError("sparsities must list at least one fraction in [0, 1]")

    def run(self, cell: Cell, ctx: Context) -> dict[str, float]:
        config = ctx.config
        grid = sorted(set(config.sparsities))
        if not cell.model_ids:
            raise ZoobenchError(f"prune: cell {cell.id} has no healthy model ({len(cell.diverged)} diverged)")
        dense, pruned = [], {s: [] for s in grid}
        for model_id in cell.model_ids:
            model = cell.model(model_id)
            dense.append(cell.evaluate(model))
            for sparsity in grid:
                candidate = prune_model(copy.deepcopy(model), sparsity, config.mode)
                if config.retrain_steps > 0:
                    cell.fit(candidate, config.retrain_steps, config.retrain_lr)
                if sparsity > 0 or config.retrain_steps > 0:
                    cell.recalibrate(candidate)
                pruned[sparsity].append(cell.evaluate(candidate))
        result = {f"dense_{m}": v for m, v in seed_mean(dense).items()}
        curves = {s: seed_mean(runs) for s, runs in pruned.items()}
        for sparsity, metrics in curves.items():
            result.update({f"{m}_s{sparsity:g}": v for m, v in metrics.items()})
        if "dense_acc" in result:
            result["max_sparsity"] = _max_sparsity(result["dense_acc"], curves, config.margin)
        return result


def _max_sparsity(dense_acc: float, curves: dict[float, dict[str, float]], margin: float) -> float:
    kept = 0.0
    for sparsity, metrics in sorted(curves.items()):
        if metrics["acc"] < dense_acc - margin:
            break
        kept = sparsity
    return kept
