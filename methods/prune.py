"""Prune: unstructured magnitude pruning over a sparsity grid, and how far a cell's models can be
pruned before they lose what they learned.

Only the weights of Linear and Conv layers are pruned (biases and normalisation layers are few
parameters and not what "sparsity" means for a network), with `torch.nn.utils.prune`: "global"
ranks all those weights together (layers may end up with very different sparsities), "layer"
removes the same fraction from every layer. Optional masked retraining goes through `cell.fit`,
the loop every method shares, so budgets are comparable; the pruning masks stay in place while it
trains. BatchNorm statistics are re-estimated after pruning, which changed every activation; an
untouched model (sparsity 0 without retraining) is evaluated as stored, so it reproduces the dense
model exactly. The reference the pruned models are measured against is the dense model with its
statistics re-estimated the same way (``recalibrated_<m>``): mid-annealing, a hot model's running
statistics lag behind its weights, and re-estimating them alone raised digits_resnet's Phase II
accuracy by 0.08, which version 3 credited to pruning (its hot cells "improved" when pruned). Without
BatchNorm the two are the same model.

Keys, for each metric m that `cell.evaluate` returns (loss and acc, or loss and rel_l2 for the
PINN), as means over the cell's seeds: ``dense_<m>`` and ``<m>_s<sparsity>`` (e.g. acc_s0.5); with
accuracy also ``chance``, the test accuracy of the best constant prediction (`TaskData.chance`); and
``kept_s<sparsity>``, the share of the reference's quality above chance (defined below) that the
pruned models keep, clipped to [0, 1] (pruning below chance keeps nothing, a pruned model better than dense
keeps all) and absent where the reference is no better than chance (nothing to keep). The
paper's "phase IV keeps its accuracy best under high sparsity" compares this share across phases: a
raw accuracy drop would credit a near-chance cell for having little to lose.

The headline ``max_sparsity`` measures what pruning keeps of what the model learned, the quality
above a trivial prediction: q = acc - chance for classification, q = 1 - rel_l2 for the PINN
(u = 0, the best constant solution, has rel_l2 exactly 1: it is the PINN's chance). Walk the
sorted grid and keep the last sparsity whose seed-mean q is >= keep x the reference's q (default:
99% of it), stopping at the first one that is not (0.0 when already the smallest fails); a cell
whose reference q is <= 0, no better than the trivial prediction, scores 0.0. Why above chance, not the raw
accuracy within a margin of dense (version 1): a model at chance stays at chance when pruned, so
the raw rule gave the worst cells (collapsed, underfitted) the highest max_sparsity. Measured
above chance, a model that learned nothing has nothing to keep, and a model barely above chance
may lose only a sliver of accuracy. Chance is the best constant prediction's accuracy, not
1 / classes, because a collapsed model predicts a constant: on an unbalanced split (SVHN's test
set is 20% ones) it scores twice 1 / classes. For the PINN the same rule allows an absolute rise
of rel_l2 of (1 - keep)(1 - dense rel_l2), about 0.01 for a good solution, as 99% of above-chance
accuracy allows about a 1% drop, and a failed solution (rel_l2 near 1) can lose almost nothing; a
relative margin on rel_l2 alone would instead let a failed solution keep failing at every sparsity.
Because the walk stops at the first drop, a lucky recovery at a higher sparsity does not count. The
reference is never retrained, so retraining shows up as a higher max_sparsity. A
task with neither accuracy nor rel_l2 reports the per-sparsity metrics and no headline.
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
    version = "4"
    headline = "max_sparsity"
    higher_is_better = True
    key_metrics = ("dense_acc", "recalibrated_acc", "acc_s0.5", "acc_s0.9", "dense_rel_l2", "rel_l2_s0.1")

    @dataclass(frozen=True)
    class Config:
        sparsities: tuple[Annotated[float, Range(0.0, 1.0)], ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                                                                     0.95, 0.99)
        mode: Literal["global", "layer"] = "global"
        keep: Annotated[float, Range(0.0, 1.0)] = 0.99  # share of the dense quality above chance to keep
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
        dense, recalibrated, pruned = [], [], {s: [] for s in grid}
        for model_id in cell.model_ids:
            model = cell.model(model_id)
            dense.append(cell.evaluate(model))
            reference_model = copy.deepcopy(model)
            recalibrated.append(cell.evaluate(reference_model) if cell.recalibrate(reference_model) else dense[-1])
            for sparsity in grid:
                candidate = prune_model(copy.deepcopy(model), sparsity, config.mode)
                if config.retrain_steps > 0:
                    cell.fit(candidate, config.retrain_steps, config.retrain_lr)
                if sparsity > 0 or config.retrain_steps > 0:
                    cell.recalibrate(candidate)
                pruned[sparsity].append(cell.evaluate(candidate))
        dense_mean, reference_mean = seed_mean(dense), seed_mean(recalibrated)
        result = {**{f"dense_{m}": v for m, v in dense_mean.items()},
                  **{f"recalibrated_{m}": v for m, v in reference_mean.items()}}
        curves = {s: seed_mean(runs) for s, runs in pruned.items()}
        for sparsity, metrics in curves.items():
            result.update({f"{m}_s{sparsity:g}": v for m, v in metrics.items()})
        chance = cell.data.chance("test") if "acc" in dense_mean else None
        if chance is not None:
            result["chance"] = chance
        if "acc" in dense_mean or "rel_l2" in dense_mean:
            reference = above_chance(reference_mean, chance)
            shares = {s: above_chance(m, chance) / reference for s, m in curves.items()} if reference > 0 else {}
            result.update({f"kept_s{s:g}": min(1.0, max(0.0, share)) for s, share in shares.items()})
            result["max_sparsity"] = max_sparsity(shares, config.keep)
        return result


def above_chance(metrics: dict[str, float], chance: float | None) -> float:
    """The quality above a trivial prediction: acc - chance, or 1 - rel_l2 without accuracy (u = 0 has rel_l2 1)."""
    return metrics["acc"] - chance if "acc" in metrics else 1.0 - metrics["rel_l2"]


def max_sparsity(shares: dict[float, float], keep: float) -> float:
    """The last sparsity of the sorted grid before the first whose share of the reference's quality
    above chance is below `keep`; 0.0 without shares (the reference is no better than chance)."""
    kept = 0.0
    for sparsity, share in sorted(shares.items()):
        if share < keep:
            break
        kept = sparsity
    return kept
