"""finetune: transfer each model of a cell to a target task, and what its training is worth there.

Every model is trained on the target for a fixed budget; a model of the same recipe trained from
scratch with the same budget and the same training loop is the baseline, so the headline ``gain``
(`improvement` of the transferred model over the scratch one, in the target's own quality) is what
the source training is worth on the target; negative transfer shows as a negative gain. The target
is ``[data] transfer_target`` of the zoo's spec (e.g. CIFAR-10 -> STL-10, digits -> digits_shifted; with
``[data.transfer_options]`` for the target's own options, e.g. the PINN's convection at beta 40),
or, with ``target_load``, the zoo's own task at another load: for the PINN zoo, whose load is the
convection coefficient beta, the same PDE at that beta (Krishnapriyan et al. 2021 warm-start a hard
beta from an easier one's solution, their "curriculum regularization").

A classification target gets a fresh output layer for its classes (the body is transferred); the
same task at another load and any target without classes (a PDE) keep the whole model, a warm start.
Training goes through `cell.fit`: SGD, or L-BFGS for zoos trained with it (the PINN: SGD barely
moves a PINN in a few hundred steps), ``steps`` being SGD steps or L-BFGS iterations.

Keys, means over the cell's seeds, for each metric m of the target's evaluation (loss and acc, or
loss and rel_l2 for the PINN): ``target_<m>`` (transferred, then trained), ``scratch_<m>`` and
``source_<m>`` (the model on its own task, as stored); ``gain`` = target_acc - scratch_acc for
classification, scratch_rel_l2 - target_rel_l2 for the PINN; ``models``. The paper's claim that
phase IV fine-tunes best reads target_acc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import nn

from zoobench.method import Cell, Context, Method, Range, TaskData, ZoobenchError, improvement, seed_mean


class Finetune(Method):
    name = "finetune"
    version = "2"
    headline = "gain"
    higher_is_better = True
    key_metrics = ("target_acc", "scratch_acc", "source_acc", "target_rel_l2", "scratch_rel_l2")
    spec_fields = ("data.transfer_target", "data.transfer_options")

    @dataclass(frozen=True)
    class Config:
        steps: Annotated[int, Range(0)] = 200  # SGD steps or L-BFGS iterations on the target, for both models
        lr: Annotated[float, Range(0.0)] | None = None  # default: SGD 0.01 (below the zoos' lr, as usual), L-BFGS 1.0
        batch_size: Annotated[int, Range(1)] = 64
        head_only: bool = False  # train only the output layer (a linear probe of the source features)
        seed: int = 0  # new heads, scratch models and data order; model i of the cell uses seed + i
        optimizer: Literal["auto", "sgd", "lbfgs"] = "auto"  # auto: L-BFGS where the zoo trains with it (the PINN)
        target_load: float | None = None  # transfer to the zoo's own task at this load (the PINN's beta) instead

    def run(self, cell: Cell, ctx: Context) -> dict[str, float]:
        config = ctx.config
        if not cell.model_ids:
            raise ZoobenchError(f"finetune: cell {cell.id} has no healthy models")
        target, target_name = load_target(cell, ctx)
        sample = check_inputs(cell.data, target, target_name)
        classes = target_classes(target) if config.target_load is None else None  # None: keep the whole model
        optimizer = config.optimizer
        if optimizer == "auto":
            optimizer = "lbfgs" if cell.recipe["training"]["optimizer"] == "lbfgs" else "sgd"
        lr = config.lr if config.lr is not None else {"sgd": 0.01, "lbfgs": 1.0}[optimizer]
        sources, transferred, scratch = [], [], []
        for i, model_id in enumerate(cell.model_ids):
            seed = config.seed + i
            source = cell.model(model_id)
            sources.append(cell.evaluate(source))
            for runs, model in ((transferred, source), (scratch, cell.build_model(seed))):
                if classes is not None:
                    layer = replace_head(model, sample, classes, seed)
                else:
                    layer = output_layer(model, sample)[1]
                cell.fit(model, config.steps, lr, data=target, batch_size=config.batch_size, seed=seed,
                         parameters=layer.parameters() if config.head_only else None, optimizer=optimizer)
                runs.append(cell.evaluate(model, data=target))
        target_mean, scratch_mean = seed_mean(transferred), seed_mean(scratch)
        result = {**{f"target_{m}": v for m, v in target_mean.items()},
                  **{f"scratch_{m}": v for m, v in scratch_mean.items()},
                  **{f"source_{m}": v for m, v in seed_mean(sources).items()}, "models": float(len(cell.model_ids))}
        gain = improvement(scratch_mean, target_mean)
        if gain is not None:
            result["gain"] = gain
        return result


def load_target(cell: Cell, ctx: Context) -> tuple[TaskData, str]:
    """The target's data and its name: the cell's task at ``target_load``, else the spec's transfer target."""
    load = ctx.config.target_load
    if load is not None:
        field = ctx.spec.grid.load.field
        if not field.startswith("data."):
            raise ZoobenchError(f"finetune: target_load needs a zoo whose load is a dataset option (the PINN's "
                                f"data.beta); the load of '{ctx.spec.name}' is {field}")
        data = cell.recipe["data"]
        option = field.removeprefix("data.")
        target = ctx.load_data(data["dataset"], **{**data["options"], option: load})
        return target, f"{data['dataset']} at {option}={load:g}"
    name = ctx.spec.data.transfer_target
    if name is None:
        raise ZoobenchError(f"finetune: zoo '{ctx.spec.name}' has no transfer target; set [data] transfer_target in "
                            f"its spec (e.g. \"stl10\" for CIFAR-10 zoos), or --set target_load=VALUE to transfer to "
                            f"the zoo's own task at another load (the PINN zoo's beta)")
    options = ctx.spec.data.transfer_options
    described = f"{name} ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else name
    return ctx.load_data(name, **options), described


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


def target_classes(target: TaskData) -> int | None:
    """The number of classes of a classification dataset (one integer label per example), read off
    its training labels; None for a target without classes (a PDE), which keeps the model's output."""
    labels = torch.cat([batch[-1] for batch in target.batches(4096, torch.Generator().manual_seed(0), None)])
    if labels.is_floating_point() or labels.dim() != 1:
        return None
    return int(labels.max().item()) + 1


def check_inputs(source, target, name: str) -> torch.Tensor:
    """Two source inputs (to find a model's output layer); the target's inputs must have their shape."""
    sample = source.fixed_batches("test", 1, 2)[0][0]
    target_shape = tuple(target.fixed_batches("test", 1, 1)[0][0].shape[1:])
    if tuple(sample.shape[1:]) != target_shape:
        raise ZoobenchError(f"finetune: transfer target '{name}' has inputs of shape {target_shape}, the zoo's "
                            f"models take {tuple(sample.shape[1:])}; pick a target with the same input shape")
    return sample
