"""Weight-space helpers shared by the metrics and the methods: points between two models, BatchNorm
re-estimation after any weight-space operation, and a model's loss as a module for `functional_call`.

After interpolating, averaging or permuting weights, BatchNorm's running statistics no longer match
them: every such model is recalibrated before it is evaluated (`recalibrate_batchnorm`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

LossFn = Callable[[nn.Module, Any], Tensor]  # (model, batch) -> mean loss of the batch, 0-d


def _forward_input(model: nn.Module, batch: Any) -> Any:
    return model(batch[0])  # a batch's first element is the model's input (the task-data protocol)


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Any],
                          forward: Callable[[nn.Module, Any], Any] = _forward_input) -> bool:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``batches``; whether
    there were any (False: the model is unchanged, so a caller need not evaluate it again).

    Momentum is set to None (cumulative average) while the forward passes run in train mode under
    no_grad; each module's momentum and training flag are restored afterwards. Without BatchNorm
    (or with only modules that track no running statistics) nothing runs and ``batches`` is not
    iterated.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return False
    modes = {module: module.training for module in model.modules()}
    momenta = [norm.momentum for norm in norms]
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
        model.train()
        seen = 0
        with torch.no_grad():
            for batch in batches:
                forward(model, batch)
                seen += 1
        if seen == 0:
            raise ValueError("BatchNorm recalibration got no batches: the running statistics would stay reset")
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        for module, training in modes.items():
            module.training = training
    return True


def interpolate(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """A new model (a deep copy of ``model_a``) at (1 - alpha) a + alpha b.

    Floating-point parameters and buffers are interpolated (``torch.lerp``: alpha 0 and 1 give a
    and b exactly); integer buffers such as ``num_batches_tracked`` are a's.
    """
    return point_between(model_a, model_b, alpha, parameters={})


def point_between(model_a: nn.Module, model_b: nn.Module, alpha: float, parameters: dict[str, Tensor],
                  into: nn.Module | None = None) -> nn.Module:
    """A deep copy of a with the given parameters and everything else floating interpolated (integer
    buffers are a's). With `into`, a model of a's architecture, that model is overwritten and returned
    instead: one copy then serves a whole path, which for small nets costs more than evaluating it."""
    tensors_b = same_tensors(model_a, model_b)
    tensors_a = {**dict(model_a.named_parameters()), **dict(model_a.named_buffers())}
    point = copy.deepcopy(model_a) if into is None else into
    with torch.no_grad():
        for name, tensor in [*point.named_parameters(), *point.named_buffers()]:
            if name in parameters:
                tensor.copy_(parameters[name])
            elif tensor.is_floating_point():
                tensor.copy_(torch.lerp(tensors_a[name], tensors_b[name], alpha))
            else:
                tensor.copy_(tensors_a[name])
    return point


def same_tensors(model_a: nn.Module, model_b: nn.Module) -> dict[str, Tensor]:
    """b's parameters and buffers by name, after checking that a has the same names and shapes."""
    tensors_a = {**dict(model_a.named_parameters()), **dict(model_a.named_buffers())}
    tensors_b = {**dict(model_b.named_parameters()), **dict(model_b.named_buffers())}
    if set(tensors_a) != set(tensors_b):
        raise ValueError("the two models have different parameter or buffer names: not the same architecture")
    for name, tensor in tensors_a.items():
        if tensor.shape != tensors_b[name].shape:
            raise ValueError(f"'{name}' has shape {tuple(tensor.shape)} in a but {tuple(tensors_b[name].shape)} in b")
    return tensors_b


class LossModule(nn.Module):
    """``loss_fn(model, batch)`` as a module, so that ``torch.func.functional_call`` can substitute the
    model's parameters (named ``model.<name>``) for one loss evaluation: every use of the model inside
    ``loss_fn`` (several forwards, model methods) then sees the substituted ones."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.model, batch)
