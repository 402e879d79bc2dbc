"""Training one unit of a zoo: the seeds of one cell, each model written to the store as it finishes.

The trainer follows the spec's recipe exactly (optimizer, OneCycle stepped per batch, init,
augmentation, checkpoint epochs) and seeds everything per model: the initialisation and augmentation
from torch's global generator seeded with the model's seed, the data order from a generator of its
own. A loss that turns NaN or infinite ends that model early and is recorded as diverged: a result,
not a crash. Data is anything that follows `zoobench.data.TaskData`; each epoch's row in
result.json holds ``train_<name>`` and ``test_<name>`` for the names its loss and evaluation report.

There is one loop (`train_seeds`): epoch by epoch it steps a trainer, then evaluates, logs,
checkpoints or publishes every seed it was asked for. The trainer is either a cell's seeds fused into
one network (`zoobench.train.fused.FusedTraining`, where the zoo allows it) or one model
(`SeparateTraining`, the general case: any architecture, task, optimizer and gradient clipping).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from zoobench.data import DATASETS, load_data
from zoobench.errors import ZoobenchError
from zoobench.execution import Runtime
from zoobench.models import build_model, initialize
from zoobench.spec import ZooSpec
from zoobench.spec.grid import ModelKey, model_spec
from zoobench.store import ModelWriter, ZooStore
from zoobench.store.writer import model_params
from zoobench.train import augment
from zoobench.train.optim import endless, epoch_means, make_optimizer


@dataclass(frozen=True)
class Outcome:
    model_id: str
    status: str  # "ok", "diverged" or "failed"
    seconds: float
    error: str = ""


class Trainer(Protocol):
    """Models of one cell trained together: `keys` in order, one `epoch` step for all of them."""

    keys: list[ModelKey]
    data: Any  # the cell's TaskData on the device
    lr: float  # the learning rate before the first step
    info: dict[str, Any]  # recorded in each published model's completion marker

    def epoch(self) -> tuple[list[dict[str, float]], float]:
        """Train one epoch; per seed the size-weighted mean loss and metrics, and the lr of the last step."""

    def model(self, index: int) -> nn.Module:
        """Seed `index`'s current weights in a module of its own, in eval mode."""


class SeparateTraining:
    """One model, trained on its own."""

    def __init__(self, spec: ZooSpec, key: ModelKey, data_root: str | Path | None, runtime: Runtime) -> None:
        recipe_spec = model_spec(spec, key)
        recipe, self.training = recipe_spec.recipe(), recipe_spec.training
        self.keys, self.runtime, self.info = [key], runtime, {}
        self.data = load_data(recipe, data_root).to(runtime.device)
        torch.manual_seed(key.seed)
        self.net = build_model(recipe).to(runtime.device)
        initialize(self.net, self.training.init)
        self.step_model = runtime.prepare(self.net)
        self.steps = self.training.steps_per_epoch or self.data.steps_per_epoch(self.training.batch_size)
        self.optimizer, self.schedule = make_optimizer(self.net, self.training, self.steps * self.training.epochs)
        self.lr = self.optimizer.param_groups[0]["lr"]
        order = torch.Generator().manual_seed(key.seed)
        augmentation = augment.build(recipe_spec.data.augmentation,
                                     DATASETS.get(recipe_spec.data.dataset).input_shape[-2:])
        self.stream = endless(lambda: self.data.batches(self.training.batch_size, order, augmentation))

    def model(self, index: int) -> nn.Module:
        return self.net.eval()

    def epoch(self) -> tuple[list[dict[str, float]], float]:
        """One epoch; per-step losses stay on the device and are read once, at the end. The reported lr is
        the one the epoch's last step used (the scheduler has already moved past it)."""
        model, optimizer, training = self.step_model, self.optimizer, self.training
        model.train()
        losses, metrics, sizes = [], [], []
        for _ in range(self.steps):
            batch = next(self.stream)
            last: list = []

            def closure() -> torch.Tensor:
                optimizer.zero_grad(set_to_none=True)
                with self.runtime.autocast():
                    loss, step_metrics = self.data.loss(model, batch)
                loss.backward()
                if training.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
                last[:] = [loss.detach(), {k: v.detach() for k, v in step_metrics.items()}]
                return loss

            optimizer.step(closure)
            lr = optimizer.param_groups[0]["lr"]
            if self.schedule is not None:
                self.schedule.step()
            losses.append(last[0])
            metrics.append(last[1])
            sizes.append(len(batch[-1]))
        return epoch_means(losses, metrics, sizes), lr


def train_seeds(spec: ZooSpec, trainer: Trainer, keys: list[ModelKey], zoo: ZooStore, runtime: Runtime) -> list[Outcome]:
    """Train `trainer`'s models and publish those of `keys` to the store; returns how each ended.

    Per epoch and seed: the clean test evaluation with the epoch's training means (at epoch 0, the
    clean evaluation of the initialisation, as in the published zoo), a checkpoint at the stored
    epochs, and at a non-finite loss the model published as diverged at that epoch while the others go
    on. Nothing of a model is visible in the store before it is published whole."""
    started = time.perf_counter()
    training, data, stored = model_spec(spec, keys[0]).training, trainer.data, set(spec.stored_epochs)
    wanted = {trainer.keys.index(key): key for key in keys}
    writers = {key.id: ModelWriter(zoo, key.id, model_params(spec, key, model_spec(spec, key).recipe()))
               for key in keys}
    info = {**trainer.info, "runtime": runtime.record()}
    outcomes: dict[str, Outcome] = {}
    try:
        lr = trainer.lr
        for epoch in range(training.epochs + 1):
            epoch_start = time.perf_counter()
            if epoch:
                train, lr = trainer.epoch()
            for index, key in wanted.items():
                if key.id in outcomes:
                    continue
                model, writer = trainer.model(index), writers[key.id]
                seed_train = train[index] if epoch else data.evaluate(model, "train")
                row = epoch_row(epoch, seed_train, data.evaluate(model), lr, time.perf_counter() - epoch_start)
                writer.log_epoch(row)
                if row["diverged"]:
                    writer.publish("diverged", diverged_epoch=epoch, seconds=time.perf_counter() - started, **info)
                    outcomes[key.id] = Outcome(key.id, "diverged", time.perf_counter() - started)
                elif epoch in stored:
                    writer.checkpoint(epoch, model.state_dict())
            if len(outcomes) == len(keys):  # every seed asked for has diverged
                break
        for key in keys:
            if key.id not in outcomes:
                writers[key.id].publish("ok", seconds=time.perf_counter() - started, **info)
                outcomes[key.id] = Outcome(key.id, "ok", time.perf_counter() - started)
    except BaseException:
        for key in keys:
            if key.id not in outcomes:
                writers[key.id].discard()
        raise
    return [outcomes[key.id] for key in keys]


def train_models(spec: ZooSpec, keys: list[ModelKey], zoo: ZooStore, data_root: str | Path | None,
                 runtime: Runtime, fused: bool = True) -> list[Outcome]:
    """The given seeds of one cell: fused when asked and the zoo allows it (see `zoobench.train.fused`),
    else one after another. A model that fails with a user-facing error (missing data, a full disk) is
    reported as failed and the others go on."""
    from zoobench.train.fused import FusedTraining, fusable

    runtime = runtime.resolved()
    if fused and fusable(model_spec(spec, keys[0]), runtime.device) is None:
        try:
            return train_seeds(spec, FusedTraining(spec, keys[0].cell, data_root, runtime), keys, zoo, runtime)
        except ZoobenchError as error:
            return [Outcome(key.id, "failed", 0.0, str(error)) for key in keys]
    outcomes = []
    for key in keys:
        try:
            outcomes += train_seeds(spec, SeparateTraining(spec, key, data_root, runtime), [key], zoo, runtime)
        except ZoobenchError as error:
            outcomes.append(Outcome(key.id, "failed", 0.0, str(error)))
    return outcomes


def epoch_row(epoch: int, train: dict[str, float], test: dict[str, float], lr: float, seconds: float) -> dict[str, Any]:
    """One line of result.json; non-finite numbers become null and mark the model as diverged."""
    return {
        "epoch": epoch, **{f"train_{k}": _finite(v) for k, v in train.items()},
        **{f"test_{k}": _finite(v) for k, v in test.items()},
        "lr": lr, "seconds": seconds, "diverged": not (math.isfinite(train["loss"]) and math.isfinite(test["loss"])),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
