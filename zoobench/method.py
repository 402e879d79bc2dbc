"""The method plugin API: everything a downstream method may use, and all it needs to import.

A method is a subclass of `Method` with a few declared attributes and one function::

    from dataclasses import dataclass
    from typing import Annotated

    from zoobench.method import Method, Range

    class MeanNorm(Method):
        name = "meannorm"              # unique; `zoobench run --method meannorm`
        version = "1"                  # bump when results change; part of the results' key
        headline = "weight_norm"       # the number heatmaps and leaderboards show
        higher_is_better = False

        @dataclass(frozen=True)
        class Config:                  # typed options with defaults; `--set power=1` overrides
            power: Annotated[float, Range(0.5)] = 2.0

        def run(self, cell, ctx):
            norms = [sum(p.abs().pow(ctx.config.power).sum().item() for p in m.parameters())
                     for m in cell.models()]
            return {"weight_norm": sum(norms) / len(norms)}

`run(cell, ctx)` gets a `Cell` (the cell's healthy models at the chosen epoch, its data, its
annotations and phase, evaluation and BatchNorm-recalibration helpers) and a `Context` (the config,
the device, other datasets) and returns a flat dict of numbers. A method with ``scope = "zoo"``
works on the whole zoo instead (e.g. a probe trained across cells): it declares ``units(config)``,
and `run` receives a `Zoo` per unit. A config is checked when it is built, before any unit runs:
field types, ``Literal`` choices, `Range`s, then the method's own `validate`. Methods never touch
the store: the runner stores, resumes and reports their results.

Built-in methods import nothing from zoobench but this module, exactly as a third-party plugin
would; this module imports torch only inside the helpers that need it, so listing plugins stays
cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence

from zoobench.data.protocol import Batch, TaskData
from zoobench.data.splits import Split, holdout_split, random_split, standard_splits
from zoobench.errors import UsageError, ZoobenchError
from zoobench.landscape.registry import seed_mean, targets
from zoobench.spec import SECTIONS, ZooSpec
from zoobench.spec.strict import Range, SpecError, convert, hints, type_name

if TYPE_CHECKING:
    from torch import nn

# The architectures' permutation symmetries (`zoobench.models.permutation`), bound on first use: they
# import torch, and listing plugins must not.
_PERMUTATION = ("PermutationSpec", "aligned_average", "apply_permutation", "average", "merge_many",
                "permutation_spec", "weight_matching")

__all__ = ["Batch", "Cell", "Context", "Method", "NoConfig", "Range", "Split", "TaskData", "UsageError", "Zoo",
           "ZoobenchError", "barrier", "holdout_split", "improvement", "interpolate", "landscape_targets",
           "linear_path", "random_split", "seed_mean", "standard_splits", *_PERMUTATION]


def __getattr__(name: str) -> Any:
    if name in _PERMUTATION:
        from zoobench.models import permutation

        return getattr(permutation, name)
    raise AttributeError(f"module 'zoobench.method' has no attribute {name!r}")


@dataclass(frozen=True)
class NoConfig:
    """The config of a method without options."""


class Method:
    """Base class of every method plugin; subclasses set the class attributes and implement `run`."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    headline: ClassVar[str]  # key of the returned dict that heatmaps and leaderboards show
    higher_is_better: ClassVar[bool] = True
    key_metrics: ClassVar[tuple[str, ...]] = ()  # a few more returned keys worth showing beside the headline
    Config: ClassVar[type] = NoConfig  # a frozen dataclass; every field has a default
    needs: ClassVar[tuple[str, ...]] = ()  # annotations used besides those that label phases (eval, cka, mc)
    # spec fields read besides the models, e.g. "data.transfer_target": outside the zoo's fingerprint, so
    # they are part of the results' key (a changed transfer target is new results, not stale ones)
    spec_fields: ClassVar[tuple[str, ...]] = ()
    scope: ClassVar[Literal["cell", "zoo"]] = "cell"

    def validate(self, config: Any) -> None:
        """Refuse a config that its field types cannot (e.g. two fractions that must leave a remainder):
        raise `UsageError` with one line saying what to change."""

    def units(self, config: Any) -> list[str]:
        """The unit ids of a zoo-scope method (e.g. its data splits); cell-scope methods run per cell."""
        raise NotImplementedError(f"method {self.name} has scope 'zoo' but does not define units()")

    def run(self, cell: Cell | Zoo, ctx: Context) -> dict[str, float]:
        raise NotImplementedError


def contract_problems(method: type) -> list[str]:
    """What is wrong with a class as a method plugin (empty when it follows the contract)."""
    if not (isinstance(method, type) and issubclass(method, Method)):
        return [f"{method!r} is not a subclass of zoobench.method.Method"]
    problems = []
    for attribute, kind in (("name", str), ("version", str), ("headline", str)):
        if not isinstance(getattr(method, attribute, None), kind) or not getattr(method, attribute):
            problems.append(f"'{attribute}' must be a non-empty string")
    if isinstance(getattr(method, "name", None), str) and not method.name.replace("_", "").isalnum():
        problems.append(f"name '{method.name}' must be letters, digits and underscores")
    if not dataclasses.is_dataclass(method.Config):
        problems.append("'Config' must be a dataclass")
    elif any(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
             for f in dataclasses.fields(method.Config)):
        problems.append("every field of 'Config' needs a default")
    fields = getattr(method, "spec_fields", ())
    if not isinstance(fields, tuple) or not all(isinstance(f, str) and "." in f and f.split(".")[0] in SECTIONS
                                                for f in fields):
        problems.append(f"'spec_fields' must be a tuple of spec fields such as 'data.transfer_target' (sections: "
                        f"{', '.join(SECTIONS)}), got {fields!r}")
    if method.scope not in ("cell", "zoo"):
        problems.append(f"'scope' must be 'cell' or 'zoo', got {method.scope!r}")
    if method.run is Method.run:
        problems.append("'run' is not implemented")
    if method.scope == "zoo" and method.units is Method.units:
        problems.append("a method with scope 'zoo' must define units(config)")
    return problems


def spec_values(spec: ZooSpec, fields: Sequence[str]) -> dict[str, Any]:
    """The values of dotted spec fields (None where the spec leaves one unset), as its table has them."""
    table, found = spec.to_table(), {}
    for name in fields:
        value: Any = table
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[name] = value
    return found


def make_config(method: type[Method], settings: dict[str, str] | None = None) -> Any:
    """The method's config with ``--set key=value`` overrides (TOML literals or bare words), checked
    against the field types, choices and ranges and by the method's `validate`: a bad value is one
    `UsageError`, raised before any work starts."""
    cls = method.Config
    types = hints(cls)
    values = {}
    for key, text in (settings or {}).items():
        if key not in types:
            valid = ", ".join(f.name for f in dataclasses.fields(cls)) or "none"
            raise UsageError(f"method {method.name} has no option '{key}'; valid: {valid}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word, e.g. --set mode=global
        try:
            values[key] = convert(types[key], value, key, f"--set for method {method.name}")
        except SpecError:
            raise UsageError(f"--set {key}={text}: method {method.name} expects {type_name(types[key])}") from None
    config = cls(**values)
    try:
        method().validate(config)
    except ZoobenchError as error:
        raise UsageError(f"method {method.name}: {error}") from None
    return config


def config_table(config: Any) -> dict[str, Any]:
    """The config as plain JSON-able values (tuples become lists), as stored next to results."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


# ---- helpers for methods ----------------------------------------------------------------------------


def interpolate(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """A new model at (1 - alpha) a + alpha b (parameters and floating buffers; alpha 0 and 1 are exact).
    Recalibrate its BatchNorm (`Cell.recalibrate`) before evaluating it."""
    from zoobench.landscape.weightspace import interpolate

    return interpolate(model_a, model_b, alpha)


def linear_path(model_a: nn.Module, model_b: nn.Module, error_fn, recalibrate=None, alphas: int = 25) -> dict:
    """Errors at `alphas` evenly spaced points from a to b, every interior point recalibrated:
    {"linear_errors", "linear_mc", "linear_t_star"} (`zoobench.landscape.connectivity.linear_path`)."""
    from zoobench.landscape.connectivity import linear_path

    return linear_path(model_a, model_b, error_fn, recalibrate, alphas)


def barrier(values: Sequence[float]) -> float:
    """Largest excess of evenly spaced path values over the straight line between its endpoints
    (Entezari et al. 2022; Ainsworth et al. 2022); 0 when the path is nowhere above it."""
    last = len(values) - 1
    return max(v - ((1 - i / last) * values[0] + i / last * values[-1]) for i, v in enumerate(values))


def improvement(before: dict[str, float], after: dict[str, float]) -> float | None:
    """How much `after` beats `before` in the task's own quality, positive when better: the accuracy
    difference for classification, the reduction of the relative L2 error for tasks without accuracy
    (the PINN); None when neither reports one. Every built-in ``gain`` headline uses it, so one sign
    convention holds across tasks and a loss (whose scale differs per task) is never the headline."""
    if "acc" in before and "acc" in after:
        return after["acc"] - before["acc"]
    if "rel_l2" in before and "rel_l2" in after:
        return before["rel_l2"] - after["rel_l2"]
    return None


def landscape_targets() -> list[tuple[str, str, bool]]:
    """(target name, annotation column, whether it is per model) for every loss-landscape quantity worth
    predicting from weights (test accuracy, gap, CKA, log Hessian trace, mc, and any registered metric's)."""
    return [(name, column.name, metric.scope == "model") for name, column, metric in targets()]


@dataclass
class Context:
    """What a method needs besides the cell: its config, where to compute, and other datasets."""

    config: Any
    spec: ZooSpec
    device: str = "cpu"
    data_root: Path | None = None

    def load_data(self, dataset: str, **options: Any) -> TaskData:
        """Another dataset (e.g. the spec's transfer target) with its default options, on this context's device."""
        from zoobench.data import load_dataset

        return load_dataset(dataset, self.data_root, **options).to(self.device)


@dataclass
class Cell:
    """One grid cell: its healthy models at `epoch`, its data, annotations, phase and helpers.

    Models are loaded from the store on each call, so a method may modify what it gets.
    """

    id: str
    load: Any
    temperature: Any
    epoch: int
    model_ids: list[str]  # healthy models, sorted by seed
    diverged: list[str]  # models of the cell that diverged during training (no weights)
    annotations: dict[str, Any]  # the cell's loss-landscape metrics, its "phase" and the "reason"
    model_annotations: dict[str, dict[str, Any]]  # model id -> per-model metrics (eval, hessian)
    _zoo: Any = field(repr=False)  # the ZooStore
    _device: str = field(default="cpu", repr=False)
    _data_root: Path | None = field(default=None, repr=False)

    @property
    def spec(self) -> ZooSpec:
        return self._zoo.spec

    @property
    def epochs(self) -> tuple[int, ...]:
        """The epochs with a stored checkpoint (e.g. for interpolating along the trajectory)."""
        return self._zoo.spec.stored_epochs

    @functools.cached_property
    def recipe(self) -> dict[str, Any]:
        """The cell's complete training recipe (the grid axes set to this cell)."""
        return self._zoo.params(self.model_ids[0] if self.model_ids else self.diverged[0])["recipe"]

    @functools.cached_property
    def data(self) -> TaskData:
        """The cell's dataset (for a PINN zoo, the cell's PDE) on the device."""
        from zoobench.data import load_data

        return load_data(self.recipe, self._data_root).to(self._device)

    def model(self, model_id: str, epoch: int | None = None) -> nn.Module:
        """One model at `epoch` (default: the cell's epoch), in eval mode, on the device."""
        return self._zoo.load_model(model_id, self.epoch if epoch is None else epoch).to(self._device)

    def models(self, epoch: int | None = None) -> list[nn.Module]:
        """All healthy models of the cell at `epoch`, in seed order."""
        return [self.model(model_id, epoch) for model_id in self.model_ids]

    def state(self, model_id: str, epoch: int | None = None) -> dict:
        """A model's weights as a state dict on the CPU, without building the model."""
        return self._zoo.load_state(model_id, self.epoch if epoch is None else epoch)

    def build_model(self, seed: int) -> nn.Module:
        """A fresh model of the cell's recipe, initialised as the zoo's models were (for baselines)."""
        import torch

        from zoobench.models import build_model, initialize

        torch.manual_seed(seed)
        model = build_model(self.recipe)
        initialize(model, self.recipe["training"]["init"])
        return model.to(self._device)

    def evaluate(self, model: nn.Module, split: str = "test", data: TaskData | None = None) -> dict[str, float]:
        """Clean loss and accuracy (or the task's metrics) on a split of `data` (default: the cell's)."""
        return (data or self.data).evaluate(model.eval(), split)

    def evaluate_many(self, models: Sequence[nn.Module], split: str = "test", data: TaskData | None = None,
                      stacked: bool | None = None) -> list[dict[str, float]]:
        """`evaluate` for many models of the cell's architecture at once (sparsities, interpolation
        points, seeds): one stacked forward pass where the family allows it and it pays (see
        `zoobench.train.fused.evaluate_many`), the same numbers as one by one (to float rounding)."""
        from zoobench.train.fused import evaluate_many

        return evaluate_many(list(models), data or self.data, split, stacked)

    def recalibrate(self, model: nn.Module, data: TaskData | None = None, batches: int = 10, batch_size: int = 128,
                    seed: int = 0) -> bool:
        """Re-estimate BatchNorm statistics on fixed clean training batches; needed after any
        weight-space operation (interpolating, averaging, permuting). Does nothing without BatchNorm,
        and then returns False: the model's metrics are unchanged."""
        from zoobench.landscape.weightspace import recalibrate_batchnorm

        def fixed():  # a generator: the batches are made only if the model has BatchNorm to recalibrate
            yield from (data or self.data).fixed_batches("train", batches, batch_size, seed)

        return recalibrate_batchnorm(model, fixed())

    def fit(self, model: nn.Module, steps: int, lr: float, data: TaskData | None = None, batch_size: int = 64,
            seed: int = 0, momentum: float = 0.9, weight_decay: float = 5e-4, parameters=None,
            optimizer: Literal["sgd", "lbfgs"] = "sgd") -> float:
        """Train `model` for `steps` SGD steps with a cosine schedule on `data` (default: the cell's).

        Fine-tuning, masked retraining and from-scratch baselines all go through this one loop, so
        their budgets are comparable. Only `parameters` (default: all) are updated. Returns the mean
        loss of the last 10% of the steps (NaN when training diverged).

        ``optimizer="lbfgs"`` is for full-batch tasks trained with L-BFGS (the PINN, which SGD barely
        moves in a few hundred steps): one batch (for the PINN, all its collocation points), L-BFGS
        with a strong Wolfe line search and history 50 as the PINN zoo trains, for up to `steps`
        iterations and 1.25 x `steps` loss evaluations (torch's default ratio); `lr` is its initial
        step length, `momentum` and `weight_decay` are not used. Returns the loss after training.
        """
        import torch

        from zoobench.train.optim import endless

        data = data or self.data
        generator = torch.Generator().manual_seed(seed)
        batches = endless(lambda: data.batches(batch_size, generator, None))
        if optimizer == "lbfgs":
            return _fit_lbfgs(model, steps, lr, data, next(batches), parameters)
        sgd = torch.optim.SGD(list(parameters or model.parameters()), lr=lr, momentum=momentum,
                              weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, max(1, steps))
        model.train()
        tail = []
        for step in range(steps):
            loss, _ = data.loss(model, next(batches))
            sgd.zero_grad(set_to_none=True)
            loss.backward()
            sgd.step()
            schedule.step()
            if step >= steps - max(1, steps // 10):
                tail.append(loss.detach())
        model.eval()
        return torch.stack(tail).mean().item() if tail else float("nan")


def _fit_lbfgs(model: nn.Module, steps: int, lr: float, data: TaskData, batch: Batch, parameters) -> float:
    """`Cell.fit` with L-BFGS: one optimizer step of up to `steps` iterations on one batch."""
    import torch

    model.train()
    if steps > 0:
        lbfgs = torch.optim.LBFGS(list(parameters or model.parameters()), lr=lr, max_iter=steps, history_size=50,
                                  line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            lbfgs.zero_grad(set_to_none=True)
            loss, _ = data.loss(model, batch)
            loss.backward()
            return loss

        lbfgs.step(closure)
    loss = data.loss(model, batch)[0].item()
    model.eval()
    return loss


@dataclass
class Zoo:
    """The whole zoo, for methods with ``scope = "zoo"``: one unit (e.g. one split) at a time."""

    id: str  # the unit, one of the method's units(config)
    spec: ZooSpec
    cells: list[Cell]

    def model_ids(self) -> list[str]:
        return [model_id for cell in self.cells for model_id in cell.model_ids]
