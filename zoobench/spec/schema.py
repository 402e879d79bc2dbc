"""Zoo specifications: frozen dataclasses parsed strictly from ``zoos/*.toml`` or any user file.

A spec is the complete recipe of a zoo: the data, the architecture, the training recipe, the grid
(load x temperature x seeds) and the evaluation epoch. Its fingerprint hashes everything that
changes what a model learns, so overriding any training field is a different zoo and never a silent
mix of models trained two ways under one name. Grid *values* are not part of the fingerprint:
widening a grid adds models to the same zoo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from zoobench.data.catalog import DATASETS
from zoobench.errors import UsageError
from zoobench.landscape.registry import METRICS
from zoobench.models.catalog import ARCHITECTURES
from zoobench.spec.strict import SpecError, convert, from_table, option_value, options_from_table

SCHEMA_VERSION = 1
SECTIONS = ("zoo", "data", "model", "training", "grid", "evaluation", "annotation", "phases")  # of a spec file


@dataclass(frozen=True)
class AugmentationSpec:
    """Train-time augmentation, applied in this order; the defaults apply none."""

    crop_padding: int = 0  # random crop back to size after zero-padding by this many pixels
    hflip: bool = False  # random horizontal flip, p = 0.5
    rotation_degrees: float = 0.0  # random rotation in [-d, d]
    color_jitter: float = 0.0  # brightness, contrast and saturation jitter strength
    randaugment: bool = False  # torchvision RandAugment with its defaults
    random_erasing: float = 0.0  # probability of torchvision RandomErasing

    @property
    def enabled(self) -> bool:
        return self != AugmentationSpec()


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    options: dict[str, Any]  # the dataset's own options (e.g. the PDE's beta), defaults filled in
    augmentation: AugmentationSpec = AugmentationSpec()
    transfer_target: str | None = None  # dataset that transfer methods fine-tune on
    transfer_options: dict[str, Any] = field(default_factory=dict)  # its options where the spec sets them


@dataclass(frozen=True)
class ModelSpec:
    architecture: str
    options: dict[str, Any]  # the family's options (e.g. width, depth), defaults filled in


@dataclass(frozen=True)
class TrainingSpec:
    optimizer: Literal["sgd", "adamw", "lbfgs"]
    lr: float  # peak learning rate of the schedule
    epochs: int
    batch_size: int = 128
    momentum: float = 0.9  # SGD momentum / AdamW beta1; cycled 0.85..0.95 by OneCycle when cycle_momentum
    weight_decay: float = 0.0
    schedule: Literal["onecycle", "constant"] = "onecycle"  # OneCycle is stepped once per batch
    pct_start: float = 0.3  # OneCycle warm-up fraction (PyTorch's default, as in the paper's code)
    cycle_momentum: bool = True  # PyTorch's OneCycle default, as in the paper's code
    init: Literal["default", "kaiming_uniform", "kaiming_normal"] = "default"
    grad_clip: float | None = None  # max global grad norm
    steps_per_epoch: int | None = None  # None: one pass over the training set
    checkpoint_epochs: tuple[int, ...] = ()  # 0 = the initialisation; the last epoch is always kept


@dataclass(frozen=True)
class Axis:
    field: str  # dotted field the axis overrides: "model.width", "training.batch_size", "data.beta", ...
    values: tuple[Any, ...]

    @property
    def short(self) -> str:
        """Abbreviation used in model ids (w64-bs128-s0)."""
        leaf = self.field.rsplit(".", 1)[-1]
        return {"width": "w", "dim": "d", "batch_size": "bs"}.get(leaf, leaf)


@dataclass(frozen=True)
class GridSpec:
    load: Axis
    temperature: Axis
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class EvaluationSpec:
    epoch: int | None = None  # epoch at which metrics and methods are evaluated; None = last


@dataclass(frozen=True)
class PhaseThresholds:
    """Where a cell's metrics put it in the phase taxonomy (Yang et al. 2021); shown next to every label.

    Each None (the default) is measured on the zoo by the one rule of `zoobench.landscape.phases`;
    a number fixes it for this zoo only (say why in the spec).
    """

    train_loss: float | None = None  # above: underfitted. None: 0.1 x chance loss ln(classes) for
    #                                  classification, else the geometric middle of the zoo's range
    mc: float | None = None  # mc below -mc is a barrier. None: a third of the zoo's typical |mc|
    cka: float | None = None  # mean CKA between seeds at or above this: IV-B. None: middle of the zoo's range


@dataclass(frozen=True)
class _Meta:
    name: str
    description: str = ""


@dataclass(frozen=True)
class ZooSpec:
    name: str
    description: str
    data: DataSpec
    model: ModelSpec
    training: TrainingSpec
    grid: GridSpec
    evaluation: EvaluationSpec
    source: str  # file it was read from; not part of the identity
    annotation: Mapping[str, Any] = field(default_factory=dict)  # metric -> its settings, where the spec sets them
    phases: PhaseThresholds = PhaseThresholds()

    def annotation_settings(self, metric: str) -> Any:
        """How `metric` is computed for this zoo: the spec's ``[annotation.<metric>]``, else its defaults.
        Part of each stored annotation's key, not of the zoo's identity."""
        return self.annotation[metric] if metric in self.annotation else METRICS.get(metric).settings()

    @property
    def metric_epoch(self) -> int:
        return self.evaluation.epoch if self.evaluation.epoch is not None else self.training.epochs

    @property
    def stored_epochs(self) -> tuple[int, ...]:
        return tuple(sorted({*self.training.checkpoint_epochs, self.training.epochs}))

    def recipe(self) -> dict[str, Any]:
        """Everything that determines what a model of this zoo learns (grid values excluded).

        The transfer target is only read by transfer methods, so it is left out (recorded as none,
        which keeps the fingerprints of zoos that never had one as they were), and so are its options."""
        data = _asdict(dataclasses.replace(self.data, transfer_target=None))
        del data["transfer_options"]
        return {
            "schema_version": SCHEMA_VERSION,
            "data": data,
            "model": _asdict(self.model),
            "training": _asdict(self.training),
            "axes": {"load": self.grid.load.field, "temperature": self.grid.temperature.field},
        }

    @property
    def fingerprint(self) -> str:
        canonical = json.dumps(self.recipe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def to_table(self) -> dict[str, Any]:
        """The TOML-shaped table this spec parses from (overrides and per-model recipes edit it)."""
        table: dict[str, Any] = {
            "zoo": {"name": self.name, "description": self.description},
            "data": {"dataset": self.data.dataset, **self.data.options,
                     "augmentation": dataclasses.asdict(self.data.augmentation)},
            "model": {"architecture": self.model.architecture, **self.model.options},
            "training": _asdict(self.training),
            "grid": _asdict(self.grid),
            "evaluation": _asdict(self.evaluation),
            "annotation": {name: dataclasses.asdict(value) for name, value in sorted(self.annotation.items())},
            "phases": _asdict(self.phases),
        }
        if self.data.transfer_target is not None:
            table["data"]["transfer_target"] = self.data.transfer_target
        if self.data.transfer_options:
            table["data"]["transfer_options"] = dict(self.data.transfer_options)
        return _drop_none(table)

    def with_overrides(self, overrides: dict[str, Any]) -> ZooSpec:
        """A new, re-validated spec with dotted fields replaced, e.g. {"training.epochs": 5}."""
        table = json.loads(json.dumps(self.to_table()))
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = table
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise UsageError(f"cannot override '{dotted}': '{part}' is not a table")
            node[leaf] = value
        return parse_table(table, f"{self.source} with overrides {overrides}")


def _asdict(obj: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(obj)))  # tuples -> lists, canonical JSON types


def _drop_none(table: dict[str, Any]) -> dict[str, Any]:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in table.items() if v is not None}


def parse_table(table: dict[str, Any], source: str) -> ZooSpec:
    """Validate a TOML-shaped table; every error names `source` and the offending key."""
    for key in table:
        if key not in SECTIONS:
            raise SpecError(f"{source}: unknown section [{key}]; valid sections: {', '.join(sorted(SECTIONS))}")
    for key in ("zoo", "data", "model", "training", "grid"):
        if key not in table:
            raise SpecError(f"{source}: missing section [{key}]")
    meta = from_table(_Meta, table["zoo"], "zoo", source)
    data = _parse_data(table["data"], source)
    model = _parse_model(table["model"], source)
    training = from_table(TrainingSpec, table["training"], "training", source)
    grid = _checked_grid(from_table(GridSpec, table["grid"], "grid", source), data, model, source)
    evaluation = from_table(EvaluationSpec, table.get("evaluation", {}), "evaluation", source)
    annotation = _parse_annotation(table.get("annotation", {}), source)
    phases = from_table(PhaseThresholds, table.get("phases", {}), "phases", source)
    spec = ZooSpec(meta.name, meta.description, data, model, training, grid, evaluation, source, annotation, phases)
    _check_epochs(spec, source)
    return spec


def _parse_data(table: Any, source: str) -> DataSpec:
    table = _require_table(table, "data", source)
    dataset = _require_name(table, "data", "dataset", DATASETS, source)
    info = DATASETS.get(dataset)
    rest = {k: v for k, v in table.items() if k not in ("dataset", "augmentation", "transfer_target",
                                                        "transfer_options")}
    options = options_from_table(info.options, info.choices, rest, "data", source, f"dataset '{dataset}'")
    augmentation = from_table(AugmentationSpec, table.get("augmentation", {}), "data.augmentation", source)
    target = table.get("transfer_target")
    if target is not None:
        target = _require_name(table, "data", "transfer_target", DATASETS, source)
    given = _require_table(table.get("transfer_options", {}), "data.transfer_options", source)
    if given and target is None:
        raise SpecError(f"{source}: data.transfer_options needs data.transfer_target, the dataset they belong to")
    if given:
        info = DATASETS.get(target)
        checked = options_from_table(info.options, info.choices, given, "data.transfer_options", source,
                                     f"dataset '{target}'")
        given = {name: checked[name] for name in given}
    return DataSpec(dataset, options, augmentation, target, given)


def _parse_annotation(table: Any, source: str) -> dict[str, Any]:
    """``[annotation.<metric>]`` tables, each checked against the metric's settings dataclass."""
    table = _require_table(table, "annotation", source)
    settings = {}
    for name, value in table.items():
        if name not in METRICS:
            raise SpecError(f"{source}: [annotation.{name}]: {METRICS.unknown(name)}")
        settings[name] = from_table(METRICS.get(name).settings, value, f"annotation.{name}", source)
    return settings


def _parse_model(table: Any, source: str) -> ModelSpec:
    table = _require_table(table, "model", source)
    architecture = _require_name(table, "model", "architecture", ARCHITECTURES, source)
    info = ARCHITECTURES.get(architecture)
    rest = {k: v for k, v in table.items() if k != "architecture"}
    options = options_from_table(info.options, info.choices, rest, "model", source, f"architecture '{architecture}'")
    return ModelSpec(architecture, options)


def _require_table(table: Any, where: str, source: str) -> dict:
    if not isinstance(table, dict):
        raise SpecError(f"{source}: [{where}] must be a table")
    return table


def _require_name(table: dict, where: str, key: str, registry, source: str) -> str:
    if key not in table:
        raise SpecError(f"{source}: missing required key '{where}.{key}' (one of: {', '.join(registry.names())})")
    name = table[key]
    if name not in registry:
        raise SpecError(f"{source}: '{where}.{key}': {registry.unknown(str(name))}")
    return name


def _checked_grid(grid: GridSpec, data: DataSpec, model: ModelSpec, source: str) -> GridSpec:
    """The grid with each axis's values type-checked against the field it overrides, and sorted."""
    axes = {}
    for axis_name in ("load", "temperature"):
        axis: Axis = getattr(grid, axis_name)
        key = f"grid.{axis_name}.values"
        if not axis.values:
            raise SpecError(f"{source}: '{key}' is empty; give at least one value")
        values = [_axis_value(axis.field, v, f"{key}[{i}]", data, model, source) for i, v in enumerate(axis.values)]
        if len(set(values)) != len(values):
            raise SpecError(f"{source}: '{key}' has repeated values")
        axes[axis_name] = Axis(axis.field, tuple(sorted(values)))
    if grid.load.field == grid.temperature.field:
        raise SpecError(f"{source}: the load and temperature axes both override '{grid.load.field}'")
    if not grid.seeds:
        raise SpecError(f"{source}: 'grid.seeds' is empty; give at least one seed")
    if len(set(grid.seeds)) != len(grid.seeds):
        raise SpecError(f"{source}: 'grid.seeds' has repeated seeds")
    return GridSpec(axes["load"], axes["temperature"], grid.seeds)


def _axis_value(dotted: str, value: Any, key: str, data: DataSpec, model: ModelSpec, source: str) -> Any:
    """Check one grid value against the type of the field its axis overrides."""
    section, _, leaf = dotted.partition(".")
    if section == "training" and leaf in TrainingSpec.__dataclass_fields__:
        return convert(typing.get_type_hints(TrainingSpec)[leaf], value, key, source)
    if section == "model" and leaf in model.options:
        info = ARCHITECTURES.get(model.architecture)
        return option_value(info.options[leaf], info.choices.get(leaf), value, key, source)
    if section == "data" and leaf in data.options:
        info = DATASETS.get(data.dataset)
        return option_value(info.options[leaf], info.choices.get(leaf), value, key, source)
    raise SpecError(
        f"{source}: axis field '{dotted}' is not a field of this spec; use training.<field>, "
        f"model.<option of {model.architecture}> or data.<option of {data.dataset}>"
    )


def _check_epochs(spec: ZooSpec, source: str) -> None:
    epochs = spec.training.epochs
    if epochs < 1:
        raise SpecError(f"{source}: 'training.epochs' must be at least 1, got {epochs}")
    for epoch in spec.training.checkpoint_epochs:
        if not 0 <= epoch <= epochs:
            raise SpecError(f"{source}: 'training.checkpoint_epochs' has {epoch}, outside 0..{epochs}")
    if spec.metric_epoch not in spec.stored_epochs:
        raise SpecError(
            f"{source}: 'evaluation.epoch' = {spec.metric_epoch} is not a stored epoch; add it to "
            f"'training.checkpoint_epochs' (stored: {', '.join(map(str, spec.stored_epochs))})"
        )
