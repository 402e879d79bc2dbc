"""Fused multi-seed training: the seeds of one cell train as one network, one step for all.

A cell's seeds share architecture, batch size and schedule, so S networks can run as one whose
channels are the seeds' channels side by side (`FusedModels`: grouped convolutions with one group
per seed, BatchNorm over all seeds' channels, Linear layers as batched matrix products). Each seed
keeps its own initialisation (built from its own seed exactly as when trained alone), its own data
order, its own augmentation draws, its own BatchNorm statistics and its own loss; the summed loss's
gradient with respect to seed s's weights is seed s's own gradient, and SGD/AdamW update every
element independently, so what each seed learns equals separate training up to float rounding
(tested for MLPs and for ResNets with augmentation). One Python step then drives S models.

Picked by measurement on this 2-core CPU, one thread, three seeds (`benchmarks/fused_training.py`):
MLPs gain 1.6x at batch 4 down to 1.1x at batch 256; ResNet-18 cells (with augmentation and
evaluation) gain 1.44x at width 2 / batch 8, 1.17x at width 4 / batch 32 and 1.15-1.17x at width 8
(batch 16 and 64, 0.98x at 256), but lose at width 16 (0.97x at batch 32, 0.69x at 256), so on CPU
conv nets fuse only up to `CPU_CONV_LIMIT` parameters (width 8 has 176k). ``torch.func.vmap`` over
``functional_call`` (with batched BatchNorm buffers) measured slower than grouped convolutions
(ResNet-18 width 2: 19.9 vs 10.2 ms per step) and no faster than separate MLP training.

A seed retrained alone (say, a damaged checkpoint, or a cell generated seed by seed) trains again
alongside all its cell's seeds, and only it is published: it comes back bit for bit (tested, also
through the annotation cache, which keys on checkpoint hashes).
`fusable` says why a zoo's cells train model by model instead.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from zoobench.data import DATASETS, load_data
from zoobench.execution import Runtime
from zoobench.models import build_model, initialize
from zoobench.spec import ZooSpec
from zoobench.spec.grid import GridCell, ModelKey, model_spec
from zoobench.train import augment
from zoobench.train.optim import endless, epoch_means, make_optimizer

CPU_CONV_LIMIT = 200_000  # parameters per model above which grouped convolutions lose on CPU


def fusable(spec: ZooSpec, device: str = "cpu") -> str | None:
    """Why the seeds of this spec's cells (or of one cell, given ``model_spec``) cannot train fused on
    `device`, or None when they can."""
    training = spec.training
    if DATASETS.get(spec.data.dataset).task != "classification":
        return f"task {DATASETS.get(spec.data.dataset).task} is not classification"
    if training.optimizer not in ("sgd", "adamw"):
        return f"optimizer {training.optimizer} steps each model with its own line search"
    with torch.device("meta"):  # the architecture without allocating it
        model = build_model(spec.recipe())
    if (problem := fused_form_problem(model)) is not None:
        return problem
    size = sum(p.numel() for p in model.parameters())
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if torch.device(device).type == "cpu" and convolutional and size > CPU_CONV_LIMIT:
        return (f"on CPU, grouped convolutions are slower than separate ones beyond {CPU_CONV_LIMIT} parameters"
                f" per model (this one has {size}; benchmarks/fused_training.py)")
    return None


_PER_CHANNEL = (nn.Flatten, nn.ReLU, nn.Tanh, nn.GELU, nn.Identity, nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d)


def fused_form_problem(model: nn.Module) -> str | None:
    """Why `model` cannot run in a `FusedModels`, or None: its forward pass must keep channels apart
    everywhere except in the layers that `FusedModels` replaces (checked per module type, since a
    forward pass cannot be inspected)."""
    from zoobench.models.resnet import CifarResNet

    if isinstance(model, CifarResNet):
        return None
    if isinstance(model, nn.Sequential):
        for layer in model:
            if not isinstance(layer, _PER_CHANNEL + (nn.Linear, nn.Conv2d, nn.BatchNorm2d)):
                return f"{type(layer).__name__} has no fused form"
        return None
    return f"{type(model).__name__} has no fused form (only MLPs and ResNets)"


class GroupedLinear(nn.Module):
    """S Linear layers side by side: (B, S * in), (S, B, in) or one input for all seeds (B, in) -> (S, B, out).

    The output keeps the seeds in front, so a chain of Linear layers and activations (an MLP) runs as
    batched matrix products without a copy between layers.
    """

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.seeds = len(layers)
        self.weight = nn.Parameter(torch.cat([layer.weight.detach() for layer in layers]))  # (S * out, in)
        self.bias = nn.Parameter(torch.cat([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seeds = self.seeds
        out = self.bias.shape[0] // seeds
        if x.dim() == 2 and x.shape[1] == self.weight.shape[1]:  # one input for all seeds: one matrix product
            return torch.addmm(self.bias, x, self.weight.t()).view(len(x), seeds, out).transpose(0, 1)
        if x.dim() == 2:  # channels side by side, as a flattened conv net or the input hands them over
            x = x.view(x.shape[0], seeds, -1).transpose(0, 1)
        return torch.baddbmm(self.bias.view(seeds, 1, out), x, self.weight.view(seeds, out, -1).transpose(1, 2))


def _grouped(parts: Sequence[nn.Module]) -> nn.Module | None:
    """The fused form of one layer of S models (None for a layer without weights), with their
    weights concatenated along the output channels."""
    first, seeds = parts[0], len(parts)
    if isinstance(first, nn.Conv2d):
        fused = nn.Conv2d(first.in_channels * seeds, first.out_channels * seeds, first.kernel_size, first.stride,
                          first.padding, first.dilation, first.groups * seeds, first.bias is not None,
                          first.padding_mode)
    elif isinstance(first, nn.BatchNorm2d):
        fused = nn.BatchNorm2d(first.num_features * seeds, first.eps, first.momentum, first.affine,
                               first.track_running_stats)
    elif isinstance(first, nn.Linear):
        return GroupedLinear(parts)
    elif next(first.parameters(recurse=False), None) is None and next(first.buffers(recurse=False), None) is None:
        return None
    else:
        raise ValueError(f"{type(first).__name__} has no fused form")
    states = [part.state_dict() for part in parts]
    fused.load_state_dict({name: torch.cat([state[name] for state in states]) if states[0][name].dim()
                           else states[0][name] for name in states[0]})
    return fused


class FusedModels(nn.Module):
    """S models of one architecture as one network whose channels are the seeds' channels side by side.

    Every convolution becomes a grouped convolution with one group per seed, every BatchNorm one over
    all seeds' channels (so each seed keeps its own batch statistics and running averages), every
    Linear a `GroupedLinear`; activations, pooling and residual additions act per channel and stay as
    they are (horizontally fused training arrays, Wang et al. 2021). Input (B, S, C, ...) -> output
    (S, B, classes). Applies to networks whose forward pass keeps channels apart except in those
    layers (the MLP and ResNet families); `fusable` decides which architectures those are.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if (problem := fused_form_problem(models[0])) is not None:
            raise ValueError(problem)
        self.seeds = len(models)
        self.net = copy.deepcopy(models[0])
        layers = [dict(model.named_modules()) for model in models]
        for name, _ in list(self.net.named_modules()):
            if name and (fused := _grouped([layer[name] for layer in layers])) is not None:
                parent, _, child = name.rpartition(".")
                setattr(self.net.get_submodule(parent), child, fused)
        first = next(m for m in self.net.modules() if isinstance(m, (GroupedLinear, nn.Conv2d)))
        self.linear_first = isinstance(first, GroupedLinear)  # a shared input then needs no copies

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """`x` is (B, S, C, ...), seed s's batch at ``x[:, s]`` (``torch.stack(batches, 1)``); with
        `shared`, (B, C, ...) is one batch for all seeds."""
        if not shared:
            x = x.flatten(1, 2)  # (B, S * C, ...)
        elif not self.linear_first:
            x = x.repeat(1, self.seeds, *([1] * (x.dim() - 2)))
        return self.net(x)  # (S, B, classes): the last layer is a GroupedLinear

    def state_dict_of(self, seed_index: int) -> dict[str, torch.Tensor]:
        """One seed's weights and buffers under the original model's state-dict names."""
        return {name: (value.view(self.seeds, -1, *value.shape[1:])[seed_index] if value.dim() else value)
                .detach().clone() for name, value in self.net.state_dict().items()}


class _SeedBatches:
    """One seed's training batches as separate training draws them: the data order from a generator
    seeded with the seed, the augmentation from torch's global generator as it stood after the seed's
    initialisation (kept per seed and swapped in for each draw)."""

    def __init__(self, data, batch_size: int, seed: int, augmentation) -> None:
        order = torch.Generator().manual_seed(seed)
        self.batches = endless(lambda: data.batches(batch_size, order, augmentation))
        self.random_state = torch.get_rng_state() if augmentation else None

    def __next__(self):
        if self.random_state is None:
            return next(self.batches)
        outer = torch.get_rng_state()
        torch.set_rng_state(self.random_state)
        try:
            batch = next(self.batches)
            self.random_state = torch.get_rng_state()
        finally:
            torch.set_rng_state(outer)
        return batch


def clip_per_seed(parameters, seeds: int, max_norm: float) -> None:
    """`torch.nn.utils.clip_grad_norm_` on each seed's own gradient: every fused parameter holds the
    seeds' parts one after another along its first dimension, so each seed's global norm is a sum over
    its blocks, and its blocks are scaled by its own coefficient, as when it trains alone."""
    grads = [p.grad.unflatten(0, (seeds, -1)) for p in parameters if p.grad is not None]
    norms = torch.stack([g.detach().pow(2).flatten(1).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(seeds, *([1] * (g.dim() - 1))).to(g.dtype))


class _Fixed(nn.Module):
    """Hands precomputed logits to a dataset's loss, which calls ``model(images)``."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits


class FusedTraining:
    """Every seed of one cell as one `FusedModels`, stepped together (a `zoobench.train.loop.Trainer`).

    The store sees exactly what separate training writes: per seed its epoch rows (clean evaluation of
    that seed's weights), checkpoints and status. It always holds every seed of the cell, in grid
    order, whichever seeds are to be published: a seed's arithmetic (and so its rounding) is then the
    same however the cell's training was split, and a damaged checkpoint is retrained bit for bit.
    """

    def __init__(self, spec: ZooSpec, cell: GridCell, data_root: str | Path | None, runtime: Runtime) -> None:
        self.keys = [ModelKey(cell, seed) for seed in spec.grid.seeds]
        recipe_spec = model_spec(spec, self.keys[0])
        recipe, training = recipe_spec.recipe(), recipe_spec.training
        self.runtime, self.info = runtime, {"fused_seeds": len(self.keys)}
        self.data = load_data(recipe, data_root).to(runtime.device)
        augmentation = augment.build(recipe_spec.data.augmentation,
                                     DATASETS.get(recipe_spec.data.dataset).input_shape[-2:])
        self.models, self.streams = [], []
        for key in self.keys:
            torch.manual_seed(key.seed)
            model = build_model(recipe).to(runtime.device)
            initialize(model, training.init)
            self.models.append(model.eval())
            self.streams.append(_SeedBatches(self.data, training.batch_size, key.seed, augmentation))
        self.stacked = FusedModels(self.models).to(runtime.device)
        self.step_model = runtime.prepare(self.stacked)
        self.steps = training.steps_per_epoch or self.data.steps_per_epoch(training.batch_size)
        self.optimizer, self.schedule = make_optimizer(self.stacked, training, self.steps * training.epochs)
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.clip = training.grad_clip

    def model(self, index: int) -> nn.Module:
        self.models[index].load_state_dict(self.stacked.state_dict_of(index))
        return self.models[index].eval()

    def epoch(self) -> tuple[list[dict[str, float]], float]:
        """One epoch of every seed; per seed the size-weighted mean loss and metrics, and the lr of the
        epoch's last step (as separate training reports them)."""
        self.step_model.train()
        losses, metrics, sizes = [], [], []
        for _ in range(self.steps):
            batches = [next(stream) for stream in self.streams]
            with self.runtime.autocast():
                logits = self.step_model(torch.stack([batch[0] for batch in batches], 1))
                results = [self.data.loss(_Fixed(logits[s]), batch) for s, batch in enumerate(batches)]
            self.optimizer.zero_grad(set_to_none=True)
            torch.stack([loss for loss, _ in results]).sum().backward()  # seed s's gradient is its own loss's
            if self.clip is not None:
                clip_per_seed(self.stacked.parameters(), len(self.keys), self.clip)
            self.optimizer.step()
            lr = self.optimizer.param_groups[0]["lr"]
            if self.schedule is not None:
                self.schedule.step()
            losses.append(torch.stack([loss.detach() for loss, _ in results]))
            metrics.append({k: torch.stack([m[k].detach() for _, m in results]) for k in results[0][1]})
            sizes.append(len(batches[0][-1]))
        return epoch_means(losses, metrics, sizes), lr


def evaluate_many(models: Sequence[nn.Module], data, split: str = "test", stacked: bool | None = None,
                  chunk: int = 1024) -> list[dict[str, float]]:
    """Clean loss and accuracy of many models of one architecture on one split, as ``data.evaluate``
    gives them one by one (e.g. a method's sparsities, interpolation points or seeds).

    With `stacked`, MLPs and ResNets on in-memory classification data run as one `FusedModels`
    forward pass. On CPU that measured 1.5x faster for width 8 but 0.65x for
    width 128 (`benchmarks/fused_evaluation.py`), so the default (None) stacks only on CUDA, where
    one kernel launch per layer instead of one per model is what pays.
    """
    import torch.nn.functional as F

    device = next(models[0].parameters()).device if models else torch.device("cpu")
    if not (stacked if stacked is not None else device.type == "cuda"):
        return [data.evaluate(model.eval(), split) for model in models]
    try:
        fused = FusedModels(models).to(device).eval()
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
