"""Training one unit of a zoo: the seeds of one cell, each model written to the store as it finishes.

The trainer follows the spec's recipe exactly (optimizer, OneCycle stepped per batch, init,
augmentation, checkpoint epochs) and seeds everything per model: the initialisation and augmentation
from torch's global generator seeded with the model's seed, the data order from a generator of its
own. A loss that turns NaN or infinite ends that model early and is recorded as diverged: a result,
not a crash.

A data object provides ``to(device)``, ``steps_per_epoch(batch_size)``, ``batches(batch_size,
generator, augment)`` (an iterator over one epoch), ``loss(model, batch) -> (mean loss, metrics)``
(a 0-d tensor and a dict of 0-d tensors such as {"acc": ...}; a batch is a tuple whose last element
has one entry per example; its first element is the model's input), ``evaluate(model, split="test")
-> {"loss": float, ...}`` (clean, no augmentation) and ``fixed_batches(split, count, size, seed)``
(clean batches that are the same for every model, for the loss-landscape metrics). Each epoch's row in result.json holds ``train_<name>`` and ``test_<name>`` for them.
"""

from __future__ import annotations

import functools
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from zoobench import __version__, augment
from zoobench.architectures import ARCHITECTURES
from zoobench.datasets import DATASETS
from zoobench.errors import ZoobenchError
from zoobench.grid import ModelKey, model_spec
from zoobench.registry import load_target
from zoobench.runtime import Runtime
from zoobench.spec import TrainingSpec, ZooSpec
from zoobench.store import ZooStore


def build_model(recipe: dict[str, Any]) -> nn.Module:
    """The untrained model of a recipe (``ZooSpec.recipe()`` or a stored params.json's "recipe")."""
    info = ARCHITECTURES.get(recipe["model"]["architecture"])
    builder = load_target(info.builder, f"architecture '{info.name}'")
    data = recipe["data"]
    return builder(recipe["model"]["options"], DATASETS.get(data["dataset"]), data["options"])


def check_available(spec: ZooSpec, data_root: str | Path | None) -> None:
    """Fail before any work starts when the zoo's architecture, dataset code or data files are missing."""
    load_target(ARCHITECTURES.get(spec.model.architecture).builder, f"architecture '{spec.model.architecture}'")
    info = DATASETS.get(spec.data.dataset)
    load_target(info.loader, f"dataset '{info.name}'")
    if info.check:
        load_target(info.check, f"dataset '{info.name}'")(info, spec.data.options, Path(data_root) if data_root else None)


@functools.lru_cache(maxsize=4)
def _load_data_cached(dataset: str, options_json: str, data_root: str | None):
    info = DATASETS.get(dataset)
    loader = load_target(info.loader, f"dataset '{dataset}'")
    return loader(info, json.loads(options_json), Path(data_root) if data_root else None)


def load_data(recipe: dict[str, Any], data_root: str | Path | None = None):
    """The recipe's dataset, loaded once per process and shared by every model trained on it."""
    data = recipe["data"]
    return _load_data_cached(data["dataset"], json.dumps(data["options"], sort_keys=True),
                             str(data_root) if data_root else None)


def initialize(model: nn.Module, scheme: str) -> None:
    """Re-initialise conv and linear layers; "kaiming_*" follows the paper's code (biases 0.01)."""
    if scheme == "default":
        return
    init = {"kaiming_uniform": nn.init.kaiming_uniform_, "kaiming_normal": nn.init.kaiming_normal_}[scheme]
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            init(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.constant_(module.bias, 0.01)


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


@dataclass(frozen=True)
class Outcome:
    model_id: str
    status: str  # "ok", "diverged" or "failed"
    seconds: float
    error: str = ""


def train_model(spec: ZooSpec, key: ModelKey, zoo: ZooStore, data_root: str | Path | None = None,
                runtime: Runtime = Runtime()) -> Outcome:
    """Train one model of the zoo and publish it to the store; returns how it ended."""
    started = time.perf_counter()
    runtime = runtime.resolved()
    recipe_spec = model_spec(spec, key)
    recipe = recipe_spec.recipe()
    training = recipe_spec.training
    data = load_data(recipe, data_root).to(runtime.device)
    torch.manual_seed(key.seed)
    model = build_model(recipe).to(runtime.device)
    initialize(model, training.init)
    step_model = runtime.prepare(model)
    steps = training.steps_per_epoch or data.steps_per_epoch(training.batch_size)
    optimizer, schedule = make_optimizer(model, training, steps * training.epochs)
    order = torch.Generator().manual_seed(key.seed)
    augmentation = augment.build(recipe_spec.data.augmentation, DATASETS.get(recipe_spec.data.dataset).input_shape[-2:])
    stream = endless(lambda: data.batches(training.batch_size, order, augmentation))
    stored = set(spec.stored_epochs)

    writer = zoo.new_model(key.id, model_params(spec, key, recipe))
    try:
        model.eval()  # epoch 0: clean evaluation of the initialisation, as in the published zoo
        eval_start = time.perf_counter()
        writer.log_epoch(epoch_row(0, data.evaluate(model, "train"), data.evaluate(model), optimizer.param_groups[0]["lr"],
                              time.perf_counter() - eval_start))
        if 0 in stored:
            writer.checkpoint(0, model.state_dict())
        for epoch in range(1, training.epochs + 1):
            epoch_start = time.perf_counter()
            train = _train_epoch(step_model, data, stream, steps, optimizer, schedule, training, runtime)
            model.eval()
            lr = train.pop("lr")
            row = epoch_row(epoch, train, data.evaluate(model), lr, time.perf_counter() - epoch_start)
            writer.log_epoch(row)
            if row["diverged"]:
                writer.publish("diverged", diverged_epoch=epoch, seconds=time.perf_counter() - started,
                               runtime=runtime.record())
                return Outcome(key.id, "diverged", time.perf_counter() - started)
            if epoch in stored:
                writer.checkpoint(epoch, model.state_dict())
        writer.publish("ok", seconds=time.perf_counter() - started, runtime=runtime.record())
    except BaseException:
        writer.discard()
        raise
    return Outcome(key.id, "ok", time.perf_counter() - started)


def _train_epoch(model, data, stream, steps, optimizer, schedule, training: TrainingSpec,
                 runtime: Runtime) -> dict[str, float]:
    """One epoch; per-step losses stay on the device and are read once, at the end.

    The reported lr is the one the epoch's last step used (the scheduler has already moved past it).
    """
    model.train()
    losses, metrics, sizes = [], [], []
    for _ in range(steps):
        batch = next(stream)
        last: list = []

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            with runtime.autocast():
                loss, step_metrics = data.loss(model, batch)
            loss.backward()
            if training.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
            last[:] = [loss.detach(), {k: v.detach() for k, v in step_metrics.items()}]
            return loss

        optimizer.step(closure)
        lr = optimizer.param_groups[0]["lr"]
        if schedule is not None:
            schedule.step()
        losses.append(last[0])
        metrics.append(last[1])
        sizes.append(len(batch[-1]))
    weights = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device) / sum(sizes)

    def mean(values: list[torch.Tensor]) -> float:
        return (torch.stack(values).float() * weights).sum().item()

    return {"loss": mean(losses), **{k: mean([m[k] for m in metrics]) for k in metrics[0]}, "lr": lr}


def epoch_row(epoch: int, train: dict[str, float], test: dict[str, float], lr: float, seconds: float) -> dict[str, Any]:
    """One line of result.json; non-finite numbers become null and mark the model as diverged."""
    return {
        "epoch": epoch, **{f"train_{k}": _finite(v) for k, v in train.items()},
        **{f"test_{k}": _finite(v) for k, v in test.items()},
        "lr": lr, "seconds": seconds, "diverged": not (math.isfinite(train["loss"]) and math.isfinite(test["loss"])),
    }


def endless(make_epoch) -> Iterator:
    """Batches across epoch boundaries, so a step budget need not be a whole number of passes."""
    while True:
        yield from make_epoch()


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def model_params(spec: ZooSpec, key: ModelKey, recipe: dict[str, Any]) -> dict[str, Any]:
    """params.json: everything needed to rebuild this model and retrain it exactly."""
    return {
        "zoo": spec.name, "fingerprint": spec.fingerprint, "model_id": key.id, "cell_id": key.cell.id,
        "seed": key.seed,
        "load": {"field": spec.grid.load.field, "value": key.cell.load},
        "temperature": {"field": spec.grid.temperature.field, "value": key.cell.temperature},
        "recipe": recipe,
        "versions": {"zoobench": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def train_unit(spec: ZooSpec, zoo_path: str, keys: list[ModelKey], data_root: str | None, runtime: Runtime,
               fused: bool = True) -> list[Outcome]:
    """A unit of work: the given seeds of one cell, trained fused when the zoo allows it (see
    `zoobench.fused`), else one after another.

    A model that fails with a user-facing error (missing data, a full disk) is reported as failed
    and the unit goes on with the next one.
    """
    zoo = ZooStore(Path(zoo_path), spec)
    if fused:
        from zoobench.fused import fusable, train_fused

        if fusable(model_spec(spec, keys[0]), runtime.device) is None:
            try:
                return train_fused(spec, keys, zoo, data_root, runtime)
            except ZoobenchError as error:
                return [Outcome(key.id, "failed", 0.0, str(error)) for key in keys]
    outcomes = []
    for key in keys:
        try:
            outcomes.append(train_model(spec, key, zoo, data_root, runtime))
        except ZoobenchError as error:
            outcomes.append(Outcome(key.id, "failed", 0.0, str(error)))
    return outcomes
