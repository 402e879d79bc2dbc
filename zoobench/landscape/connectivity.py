"""Mode connectivity between two models: the linear path and a trained quadratic Bezier curve.

Both report mc = 1/2 (L(0) + L(1)) - L(t*), t* = argmax_t |1/2 (L(0) + L(1)) - L(t)| over the
evaluated t (Yang et al. 2021): mc < 0 is a barrier between the two models, mc > 0 means the
endpoints are under-trained (lower error in between), mc ~ 0 means they are connected.

The module never touches a dataset; the caller passes callables:

- ``loss_fn(model, batch) -> 0-d tensor``: the mean training loss of a batch (differentiable);
- ``train_batches() -> Iterable[batch]``: one epoch of clean training batches;
- ``error_fn(model) -> float``: the train error (or loss, for tasks without accuracy) on a fixed
  set, lower is better; it receives models in eval mode;
- ``recalibrate(model) -> None``: re-estimates BatchNorm running statistics in place, typically
  ``lambda m: recalibrate_batchnorm(m, batches)`` (`zoobench.landscape.weightspace`). After any
  weight-space operation the stored running statistics no longer match the weights, so every
  interior point is recalibrated.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from zoobench.landscape.weightspace import LossFn, LossModule, interpolate, point_between, same_tensors


def linear_path(
    model_a: nn.Module,
    model_b: nn.Module,
    error_fn: Callable[[nn.Module], float],
    recalibrate: Callable[[nn.Module], None] | None = None,
    alphas: int = 25,
) -> dict[str, Any]:
    """Errors at ``alphas`` evenly spaced points of the segment from a to b, endpoints included.

    Cost: ``alphas`` calls of ``error_fn`` and ``alphas - 2`` of ``recalibrate`` (the endpoints are
    the models themselves). Returns {"linear_mc", "linear_t_star", "linear_errors"}.
    """
    if alphas < 3:
        raise ValueError(f"the linear path needs at least 3 points (one between the endpoints), got {alphas}")
    ts = _grid(alphas)
    scratch = copy.deepcopy(model_a)  # every point is written into it in turn
    errors = [_evaluate(point_between(model_a, model_b, t, {}, into=scratch), t, error_fn, recalibrate) for t in ts]
    mc, t_star = _mode_connectivity(ts, errors)
    return {"linear_mc": mc, "linear_t_star": t_star, "linear_errors": errors}


def curve_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """The curve-training learning rate of Garipov et al. (2018) for ``epoch`` in 1..``epochs``.

    Factor 1 up to 50% of the epochs, then linearly down to 0.01 at 90%, then 0.01, always applied
    to the base lr (as in Garipov's train.py). The phase-zoo paper's public code feeds the decayed
    lr back in as the next epoch's base, which compounds the decay; this does not.
    """
    progress = epoch / epochs
    if progress <= 0.5:
        factor = 1.0
    elif progress <= 0.9:
        factor = 1.0 - (progress - 0.5) / 0.4 * 0.99
    else:
        factor = 0.01
    return factor * base_lr


def bezier_curve_mc(
    model_a: nn.Module,
    model_b: nn.Module,
    loss_fn: LossFn,
    train_batches: Callable[[], Iterable[Any]],
    error_fn: Callable[[nn.Module], float],
    recalibrate: Callable[[nn.Module], None] | None = None,
    epochs: int = 10,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    t_values: int = 11,
    seed: int = 0,
) -> dict[str, Any]:
    """mc along a quadratic Bezier curve theta(t) = (1-t)^2 a + 2t(1-t) c + t^2 b with fixed ends.

    The control point c starts at the midpoint (a + b) / 2, where the curve is the linear path, and
    is trained for ``epochs`` epochs: one t ~ U(0, 1) per batch (from a generator seeded with
    ``seed``), SGD on c alone with the schedule of ``curve_lr``. The model is in train mode, so
    BatchNorm normalizes with batch statistics (its running statistics are updated on a scratch
    copy and never used). ``weight_decay`` acts on c through SGD; Garipov's code instead adds
    wd/2 |theta(t)|^2 to the loss. The curve is then evaluated at ``t_values`` evenly spaced t in
    [0, 1]: parameters from the curve, floating buffers interpolated linearly between a and b,
    then recalibrated at each interior t.

    Cost: ``epochs`` epochs of forward-backward passes, then ``t_values`` calls of ``error_fn`` and
    ``t_values - 2`` of ``recalibrate``. Deterministic given ``seed`` when ``train_batches`` and
    the model are. Returns {"mc", "mc_t_star", "mc_errors", "mc_curve_epochs"}.
    """
    if t_values < 5:
        raise ValueError(f"the Bezier curve needs at least 5 evaluated t values, got {t_values}")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    same_tensors(model_a, model_b)  # fail early on two different architectures
    ends_a = {name: p.detach() for name, p in model_a.named_parameters()}
    ends_b = {name: p.detach() for name, p in model_b.named_parameters()}
    middle = {name: torch.lerp(ends_a[name], ends_b[name], 0.5) for name in ends_a}
    control = {name: tensor.clone().requires_grad_(True) for name, tensor in middle.items()}

    def curve(t: float) -> dict[str, Tensor]:
        # The same polynomial as (1-t)^2 a + 2t(1-t) c + t^2 b, written as the linear path plus a
        # bend, so that the untrained curve (c = (a+b)/2) is the linear path to the last bit.
        return {
            name: torch.lerp(ends_a[name], ends_b[name], t) + 2 * t * (1 - t) * (control[name] - middle[name])
            for name in control
        }

    if epochs > 0:
        _train_control(model_a, model_b, curve, control, loss_fn, train_batches, epochs, lr, momentum, weight_decay, seed)
    ts = _grid(t_values)
    errors, scratch = [], copy.deepcopy(model_a)  # every point is written into it in turn
    for t in ts:
        with torch.no_grad():
            point = point_between(model_a, model_b, t, parameters=curve(t), into=scratch)
        errors.append(_evaluate(point, t, error_fn, recalibrate))
    mc, t_star = _mode_connectivity(ts, errors)
    return {"mc": mc, "mc_t_star": t_star, "mc_errors": errors, "mc_curve_epochs": epochs}


def _train_control(
    model_a: nn.Module,
    model_b: nn.Module,
    curve: Callable[[float], dict[str, Tensor]],
    control: dict[str, Tensor],
    loss_fn: LossFn,
    train_batches: Callable[[], Iterable[Any]],
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    seed: int,
) -> None:
    # A scratch model supplies the buffers (BatchNorm updates its running statistics in place).
    wrapper = LossModule(interpolate(model_a, model_b, 0.5).train(), loss_fn)
    optimizer = torch.optim.SGD(control.values(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = curve_lr(lr, epoch, epochs)
        for batch in train_batches():
            t = float(torch.rand((), generator=generator))
            parameters = {f"model.{name}": tensor for name, tensor in curve(t).items()}
            loss = functional_call(wrapper, parameters, (batch,))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def _evaluate(
    point: nn.Module, t: float, error_fn: Callable[[nn.Module], float], recalibrate: Callable[[nn.Module], None] | None
) -> float:
    if recalibrate is not None and 0.0 < t < 1.0:
        recalibrate(point)
    return float(error_fn(point.eval()))


def _grid(points: int) -> list[float]:
    return [i / (points - 1) for i in range(points)]  # exact 0.0 and 1.0 at the ends


def _mode_connectivity(ts: list[float], errors: list[float]) -> tuple[float, float]:
    """(mc, t*) with mc = 1/2 (L(0) + L(1)) - L(t*), t* the first t of largest |deviation|."""
    ends = 0.5 * (errors[0] + errors[-1])
    deviations = [ends - error for error in errors]
    best = max(range(len(ts)), key=lambda i: abs(deviations[i]))
    return deviations[best], ts[best]
