"""finetune: transfer each model of a cell to the spec's target task with a new head.

Every model gets a fresh output layer for the target's classes and is trained on the target for a
fixed budget; a model of the same recipe trained from scratch with the same head, the same budget
and the same training loop is the baseline, so ``gain`` is what the source training is worth on
the target (negative transfer shows as a negative gain). The target is ``[data] transfer_target``
of the zoo's spec (e.g. CIFAR-10 -> STL-10, digits -> digits_shifted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from zoobench.method import Cell, Context, Method, Range, ZoobenchError, seed_mean


class Finetune(Method):
    name = "finetune"
    version = "1"
    headline = "target_acc"
    higher_is_better = True
    key_metrics = ("scratch_acc", "gain", "source_acc")

    @dataclass(frozen=True)
    class Config:
        steps: Annotated[int, Range(0)] = 200  # SGD steps on the target, for the transferred and the scratch model
        lr: Annotated[float, Range(0.0)] = 0.01  # peak of the cosine schedule; below the zoos' training lr, as usual
        batch_size: Annotated[int, Range(1)] = 64
        head_only: bool = False  # train only the new head (a linear probe of the source features)
        seed: int = 0  # new heads, scratch models and data order; model i of the cell uses seed + i

    def run(self, cell: Cell, ctx: Context) -> dict[str, float]:
        config = ctx.config
        if not cell.model_ids:
            raise ZoobenchError(f"finetune: cell {cell.id} has no healthy models")
        target_name = ctx.spec.data.transfer_target
        if target_name is None:
            raise ZoobenchError(f"finetune: zoo '{ctx.spec.name}' has no transfer target; set "
                                f"[data] transfer_target in its spec (e.g. \"stl10\" for CIFAR-10 zoos)")
        target = ctx.load_data(target_name)
        classes = target_classes(target, target_name)
        sample = check_inputs(cell.data, target, target_name)
        seeds = []
        for i, model_id in enumerate(cell.model_ids):
            seed = config.seed + i
            source = cell.model(model_id)
            found = {"source_acc": cell.evaluate(source)["acc"]}
            for key, model in (("target_acc", source), ("scratch_acc", cell.build_model(seed))):
                layer = replace_head(model, sample, classes, seed)
                cell.fit(model, config.steps, config.lr, data=target, batch_size=config.batch_size, seed=seed,
                         parameters=layer.parameters() if config.head_only else None)
                found[key] = cell.evaluate(model, data=target)["acc"]
            seeds.append(found)
        means = seed_mean(seeds)
        return {**means, "gain": means["target_acc"] - means["scratch_acc"], "models": float(len(cell.model_ids))}


def output_layer(model: nn.Module, sample: torch.Tensor) -> tuple[str, nn.Linear]:
    """The name and module of the layer that produces the logits: the last `nn.Linear` in module
    order whose outputs are as many as the model's (fc of a ResNet, head of a ViT, the MLP's last)."""
    with torch.no_grad():
        outputs = model.eval()(sample).shape[-1]
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == outputs]
    if not found:
        raise ZoobenchError(f"finetune: {type(model).__name__} has no nn.Linear output layer with {outputs} "
                            f"outputs to replace")
    name, layer = found[-1]
    if sum(p is layer.weight for _, p in model.named_parameters(remove_duplicate=False)) > 1:
        raise ZoobenchError(f"finetune: the output layer '{name}' of {type(model).__name__} shares its weight "
                            f"with another layer (tied embeddings, as in GPT-2); replacing it is not supported")
    return name, layer


def replace_head(model: nn.Module, sample: torch.Tensor, classes: int, seed: int) -> nn.Linear:
    """Replace `model`'s output layer (found by running it on `sample` inputs), in place, by a fresh
    one with `classes` outputs; returns the new layer.

    The fresh layer is drawn with its own seed (the global generator is left as it was), so the
    transferred and the scratch model of one seed start from the same head.
    """
    name, old = output_layer(model, sample)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = nn.Linear(old.in_features, classes, bias=old.bias is not None).to(old.weight.device)
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent), leaf, fresh)
    return fresh


def target_classes(target, name: str) -> int:
    """The number of classes of a classification dataset (one integer label per example), read off
    its training labels."""
    labels = torch.cat([batch[-1] for batch in target.batches(4096, torch.Generator().manual_seed(0), None)])
    if labels.is_floating_point() or labels.dim() != 1:
        raise ZoobenchError(f"finetune: transfer target '{name}' is not a classification dataset "
                            f"(one class label per example)")
    return int(labels.max().item()) + 1


def check_inputs(source, target, name: str) -> torch.Tensor:
    """Two source inputs (to find a model's output layer); the target's inputs must have their shape."""
    sample = source.fixed_batches("test", 1, 2)[0][0]
    target_shape = tuple(target.fixed_batches("test", 1, 1)[0][0].shape[1:])
    if tuple(sample.shape[1:]) != target_shape:
        raise ZoobenchError(f"finetune: transfer target '{name}' has inputs of shape {target_shape}, the zoo's "
                            f"models take {tuple(sample.shape[1:])}; pick a target with the same input shape")
    return sample
