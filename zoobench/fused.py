"""Fused multi-seed training: the seeds of one cell train as one stacked model, one step for all.

A cell's seeds share architecture, batch size and schedule, so S networks can run as one with every
weight stacked along a leading seed axis (`StackedMLP`: each Linear becomes one batched matrix
product, ``baddbmm``). Each seed keeps its own initialisation (built from its own seed exactly as
when trained alone), its own data order and its own loss; the summed loss's gradient with respect to
seed s's weights is seed s's own gradient, and SGD/AdamW update every element independently, so what
each seed learns equals separate training up to float rounding (tested). One Python step then
drives S models: on CPU that is what pays for the small networks of a zoo
(`benchmarks/fused_training.py`, three digits seeds: 1.9x at batch 4 down to 1.1x at batch 256;
`torch.func.vmap` over `functional_call` measured no faster than separate training, 0.9x).

A seed retrained alone (say, a damaged checkpoint) takes the same stacked path with S = 1, which
gives it back bit for bit (tested through the annotation cache, which keys on checkpoint hashes).

Fusion applies to the MLP family on classification data, trained by SGD or AdamW without gradient
clipping or augmentation; everything else trains model by model (`fusable` says why not).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from zoobench.datasets import DATASETS
from zoobench.grid import ModelKey, model_spec
from zoobench.spec import ZooSpec
from zoobench.store import ZooStore
from zoobench.training import (Outcome, build_model, endless, epoch_row, initialize, load_data, make_optimizer,
                               model_params)

ACTIVATIONS = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh}


def fusable(spec: ZooSpec) -> str | None:
    """Why the zoo's cells cannot train fused, or None when they can."""
    training = spec.training
    if spec.model.architecture != "mlp":
        return f"architecture {spec.model.architecture} has no fused form (only mlp)"
    if DATASETS.get(spec.data.dataset).task != "classification":
        return f"task {DATASETS.get(spec.data.dataset).task} is not classification"
    if training.optimizer not in ("sgd", "adamw"):
        return f"optimizer {training.optimizer} steps each model with its own line search"
    if training.grad_clip is not None:
        return "gradient clipping needs per-model norms"
    if spec.data.augmentation.enabled:
        return "augmentation draws from each model's own random stream"
    return None


class StackedMLP(nn.Module):
    """S copies of an MLP (``nn.Sequential`` of Flatten, Linear and ReLU/Tanh) as one module.

    Input (S, B, ...) -> output (S, B, classes); parameters are (S, out, in) weights and (S, out) biases.
    """

    def __init__(self, models: Sequence[nn.Sequential]) -> None:
        super().__init__()
        self.names: list[str] = []  # the original state-dict prefix of each stacked Linear
        self.steps: list = []  # "flatten", an activation function, or the index of a stacked Linear
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        if not isinstance(models[0], nn.Sequential):
            raise ValueError(f"{type(models[0]).__name__} has no stacked form (an MLP is an nn.Sequential)")
        for index, module in enumerate(models[0]):
            if isinstance(module, nn.Flatten):
                self.steps.append("flatten")
            elif type(module) in ACTIVATIONS:
                self.steps.append(ACTIVATIONS[type(module)])
            elif isinstance(module, nn.Linear):
                layers = [model[index] for model in models]
                self.weights.append(nn.Parameter(torch.stack([layer.weight.detach() for layer in layers])))
                self.biases.append(nn.Parameter(torch.stack([layer.bias.detach() for layer in layers])))
                self.steps.append(len(self.names))
                self.names.append(str(index))
            else:
                raise ValueError(f"{type(module).__name__} has no stacked form")

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """`x` is (S, B, ...), one batch per seed; with `shared`, (B, ...) is one batch for all seeds, and
        the first Linear runs as a single matrix product with the seeds' weights side by side."""
        for step in self.steps:
            if step == "flatten":
                x = x.flatten(1 if shared else 2)
            elif isinstance(step, int) and shared:
                weight, bias = self.weights[step], self.biases[step]  # (S, out, in), (S, out)
                x = torch.addmm(bias.flatten(), x, weight.flatten(0, 1).t())  # (B, S * out)
                x = x.view(x.shape[0], *bias.shape).transpose(0, 1)  # (S, B, out)
                shared = False
            elif isinstance(step, int):
                x = torch.baddbmm(self.biases[step].unsqueeze(1), x, self.weights[step].transpose(1, 2))
            else:
                x = step(x)
        return x

    def state_dict_of(self, seed_index: int) -> dict[str, torch.Tensor]:
        """One seed's weights under the original model's state-dict names."""
        state = {}
        for name, weight, bias in zip(self.names, self.weights, self.biases):
            state[f"{name}.weight"] = weight[seed_index].detach().clone()
            state[f"{name}.bias"] = bias[seed_index].detach().clone()
        return state


class _Fixed(nn.Module):
    """Hands precomputed logits to a dataset's loss, which calls ``model(images)``."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits


def train_fused(spec: ZooSpec, keys: list[ModelKey], zoo: ZooStore, data_root: str | Path | None = None,
                device: str = "cpu") -> list[Outcome]:
    """Train the given seeds of one cell as one stacked model and publish each seed to the store.

    The store sees exactly what separate training writes: per seed its epoch rows (clean evaluation of
    that seed's weights), checkpoints and status; a seed that diverges is published as diverged at
    that epoch while the others go on.
    """
    started = time.perf_counter()
    recipe_spec = model_spec(spec, keys[0])
    recipe, training = recipe_spec.recipe(), recipe_spec.training
    data = load_data(recipe, data_root).to(device)
    models = []
    for key in keys:
        torch.manual_seed(key.seed)
        model = build_model(recipe).to(device)
        initialize(model, training.init)
        models.append(model.eval())
    stacked = StackedMLP(models).to(device)
    steps = training.steps_per_epoch or data.steps_per_epoch(training.batch_size)
    optimizer, schedule = make_optimizer(stacked, training, steps * training.epochs)
    streams = [endless(lambda g=torch.Generator().manual_seed(key.seed): data.batches(training.batch_size, g, None))
               for key in keys]
    stored = set(spec.stored_epochs)
    writers = {key.id: zoo.new_model(key.id, model_params(spec, key, model_spec(spec, key).recipe()))
               for key in keys}
    outcomes: dict[str, Outcome] = {}
    try:
        lr = optimizer.param_groups[0]["lr"]
        for epoch in range(training.epochs + 1):
            epoch_start = time.perf_counter()
            if epoch:
                train, lr = _train_epoch(stacked, data, streams, steps, optimizer, schedule)
            for index, key in enumerate(keys):
                if key.id in outcomes:
                    continue
                models[index].load_state_dict(stacked.state_dict_of(index))
                writer = writers[key.id]
                seed_train = train[index] if epoch else data.evaluate(models[index], "train")
                row = epoch_row(epoch, seed_train, data.evaluate(models[index]), lr, time.perf_counter() - epoch_start)
                writer.log_epoch(row)
                if row["diverged"]:
                    writer.publish("diverged", diverged_epoch=epoch, seconds=time.perf_counter() - started)
                    outcomes[key.id] = Outcome(key.id, "diverged", time.perf_counter() - started)
                elif epoch in stored:
                    writer.checkpoint(epoch, models[index].state_dict())
        for key in keys:
            if key.id not in outcomes:
                writers[key.id].publish("ok", seconds=time.perf_counter() - started, fused_seeds=len(keys))
                outcomes[key.id] = Outcome(key.id, "ok", time.perf_counter() - started)
    except BaseException:
        for key in keys:
            if key.id not in outcomes:
                writers[key.id].discard()
        raise
    return [outcomes[key.id] for key in keys]


def _train_epoch(stacked: StackedMLP, data, streams, steps: int, optimizer, schedule):
    """One epoch of every seed; returns per seed the size-weighted mean loss and metrics, and the lr
    of the epoch's last step (as separate training reports them)."""
    stacked.train()
    losses, metrics, sizes = [], [], []
    for _ in range(steps):
        batches = [next(stream) for stream in streams]
        logits = stacked(torch.stack([batch[0] for batch in batches]))
        results = [data.loss(_Fixed(logits[s]), batch) for s, batch in enumerate(batches)]
        optimizer.zero_grad(set_to_none=True)
        torch.stack([loss for loss, _ in results]).sum().backward()  # seed s's gradient is its own loss's
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        if schedule is not None:
            schedule.step()
        losses.append(torch.stack([loss.detach() for loss, _ in results]))
        metrics.append({k: torch.stack([m[k].detach() for _, m in results]) for k in results[0][1]})
        sizes.append(len(batches[0][-1]))
    weights = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device) / sum(sizes)

    def mean(values: list[torch.Tensor]) -> list[float]:
        return (torch.stack(values).float() * weights[:, None]).sum(0).tolist()

    per_seed_loss = mean(losses)
    per_seed_metrics = {k: mean([m[k] for m in metrics]) for k in metrics[0]}
    train = [{"loss": per_seed_loss[s], **{k: v[s] for k, v in per_seed_metrics.items()}}
             for s in range(len(streams))]
    return train, lr


def evaluate_many(models: Sequence[nn.Module], data, split: str = "test", stacked: bool | None = None,
                  chunk: int = 1024) -> list[dict[str, float]]:
    """Clean loss and accuracy of many models of one architecture on one split, as ``data.evaluate``
    gives them one by one (e.g. a method's sparsities, interpolation points or seeds).

    With `stacked`, MLPs on in-memory classification data run as one stacked forward pass, the first
    layer as a single matrix product. On CPU that measured 1.5x faster for width 8 but 0.65x for
    width 128 (`benchmarks/fused_evaluation.py`), so the default (None) stacks only on CUDA, where
    one kernel launch per layer instead of one per model is what pays.
    """
    import torch.nn.functional as F

    device = next(models[0].parameters()).device if models else torch.device("cpu")
    if not (stacked if stacked is not None else device.type == "cuda"):
        return [data.evaluate(model.eval(), split) for model in models]
    try:
        fused = StackedMLP(models).to(device)
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    except (ValueError, AttributeError, IndexError, StopIteration):
        return [data.evaluate(model.eval(), split) for model in models]
    loss = torch.zeros(len(models), device=y.device)
    correct = torch.zeros(len(models), device=y.device)
    with torch.no_grad():
        for start in range(0, len(y), chunk):
            images = data.normalize(x[start:start + chunk])
            logits = fused(images, shared=True)  # (S, B, classes)
            target = y[start:start + chunk]
            loss += F.cross_entropy(logits.flatten(0, 1).float(), target.repeat(len(models)),
                                    reduction="none").view(len(models), -1).sum(1)
            correct += (logits.argmax(2) == target).sum(1)
    return [{"loss": l / len(y), "acc": c / len(y)} for l, c in zip(loss.tolist(), correct.tolist())]
