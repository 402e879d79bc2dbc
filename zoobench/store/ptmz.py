"""Import and export of the published Phase Transition Model Zoo layout (Ray Tune trial folders).

A published zoo is a folder of trial folders, each with ``params.json`` (flat keys such as
``model::width``, ``training::batchsize``, ``optim::lr``, ``seed``), a JSON-lines ``result.json``
(line i = epoch i, some lines annotated with loss-landscape keys) and
``checkpoint_{epoch:06d}/checkpoints`` (a torch-pickled state dict, possibly ``module.``-prefixed).
Checkpoints are pickles written by someone else, so they are only ever read with
``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused and its model
skipped, and nothing in it runs. Export writes the same layout plus ``zoobench_spec.json``, so an
exported zoo imports back with the same fingerprint, ids, results and weights.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoobench.errors import UsageError, ZoobenchError
from zoobench.spec import ZooSpec, parse_table
from zoobench.spec.grid import ModelKey, cell, model_spec
from zoobench.store import atomic, published
from zoobench.store.home import Store
from zoobench.store.writer import ModelWriter, model_params
from zoobench.store.zoo import MARKER, ZooStore

SPEC_FILE = "zoobench_spec.json"
RESNETS = {"Resnet18_width": 18, "Resnet50_width": 50}
# Ray Tune's own bookkeeping in result.json lines: not results of the model
RAY_KEYS = {"config", "trial_id", "date", "timestamp", "time_total_s", "pid", "hostname", "node_ip",
            "time_since_restore", "iterations_since_restore", "training_iteration", "done", "timesteps_total",
            "episodes_total", "experiment_id", "experiment_tag", "checkpoint_dir_name", "should_checkpoint",
            "timesteps_since_restore", "episodes_this_iter", "timesteps_this_iter"}
DATASET_HINTS = [("svhn", "svhn"), ("tiny", "tinyimagenet"), ("cifar_100", "cifar100"), ("cifar100", "cifar100"),
                 ("cifar-100", "cifar100"), ("cifar_10", "cifar10"), ("cifar10", "cifar10"), ("cifar-10", "cifar10")]


@dataclass
class ImportReport:
    path: Path
    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # trial folder -> why
    annotated: list[int] = field(default_factory=list)  # epochs whose result.json lines carry published annotations


def import_zoo(path: str | Path, name: str, store: Store | None = None, dataset: str | None = None,
               show_progress: bool = True) -> tuple[ZooSpec, ImportReport]:
    """Import every trial folder under `path` as zoo `name`; resumable, and bad trials are skipped, not fatal."""
    from rich.progress import track

    root = Path(path)
    trials = sorted(p.parent for p in root.rglob("params.json"))
    if not trials:
        raise UsageError(f"no trial folders (with params.json) under {root}; expected the published zoo layout "
                         f"<trial>/params.json, <trial>/result.json, <trial>/checkpoint_NNNNNN/checkpoints")
    params = {trial: json.loads((trial / "params.json").read_text()) for trial in trials}
    spec = _spec(root, name, params, dataset)
    zoo = (store or Store()).zoo(spec)
    report = ImportReport(zoo.path)
    with zoo.writing():
        for trial in track(trials, description=f"importing {name}", disable=not show_progress):
            key = _key(spec, params[trial])
            if zoo.problem(key.id) is None:
                report.already.append(key.id)
                continue
            try:
                _import_trial(zoo, spec, key, trial, params[trial])
                report.imported.append(key.id)
            except ZoobenchError as error:
                report.skipped[str(trial.relative_to(root))] = str(error)
        report.annotated = _keep_annotations(zoo, root)
    return spec, report


def _keep_annotations(zoo: ZooStore, root: Path) -> list[int]:
    """The published annotation keys in the models' result.json lines, stored as the zoo's published
    annotations at those epochs (so its phases need no data and no recomputation)."""
    results = zoo.results()
    keys = [key for key in published.COLUMNS if key in results]
    if not keys:
        return []
    epochs = sorted(int(e) for e in results.loc[results[keys].notna().any(axis=1), "epoch"].unique())
    for epoch in epochs:
        cells, _ = published.cells(results[results["epoch"] == epoch].to_dict("records"), lambda row: row["cell_id"])
        published.write(zoo, epoch, cells, {"source": f"annotation keys of the result.json lines under {root}"})
    return epochs


def _spec(root: Path, name: str, params: dict[Path, dict], dataset: str | None) -> ZooSpec:
    """The zoo's spec: stored by a zoobench export, else inferred from the trials' params."""
    if (root / SPEC_FILE).exists():
        table = json.loads((root / SPEC_FILE).read_text())["spec"]
        table["zoo"]["name"] = name
        return parse_table(table, str(root))
    first = next(iter(params.values()))
    varying = sorted({k for p in params.values() for k in p if p.get(k) != first.get(k)}
                     - {"model::width", "training::batchsize", "seed", "trial_id", "experiment_tag"})
    if varying:
        values = sorted({json.dumps(p.get(varying[0])) for p in params.values()})
        raise UsageError(f"the trials under {root} differ in {varying[0]} ({', '.join(values)}); a zoo varies only "
                         f"model::width, training::batchsize and seed: import each setting as its own zoo")
    model_type = first.get("model::type")
    if model_type not in RESNETS:
        raise UsageError(f"{root}: model::type {model_type!r} is not supported; supported: {', '.join(RESNETS)}")
    dataset = dataset or _guess_dataset(first)
    if dataset is None:
        raise UsageError(f"cannot tell the dataset of {root} from its params; pass --dataset "
                         f"(cifar10, cifar100, svhn or tinyimagenet)")
    stored = sorted({int(c.name.split("_")[1]) for trial in params for c in trial.glob("checkpoint_*")
                     if (c / "checkpoints").exists()})
    epochs = int(first["training::epochs_train"])
    table = {
        "zoo": {"name": name, "description": f"imported from {root}"},
        "data": {"dataset": dataset, "augmentation": {"crop_padding": 4, "hflip": dataset != "svhn",
                                                      "rotation_degrees": 20.0}},
        "model": {"architecture": "resnet", "depth": RESNETS[model_type]},
        "training": {
            "optimizer": first.get("optim::optimizer", "sgd").lower(), "lr": first["optim::lr"],
            "momentum": first.get("optim::momentum", 0.9), "weight_decay": first.get("optim::wd", 0.0),
            "schedule": "onecycle" if first.get("optim::scheduler") == "OneCycleLR" else "constant",
            "epochs": epochs, "init": first.get("model::init_type", "default"),
            "checkpoint_epochs": [e for e in stored if e <= epochs],
        },
        "grid": {"seeds": sorted({p["seed"] for p in params.values()}),
                 "load": {"field": "model.width", "values": sorted({p["model::width"] for p in params.values()})},
                 "temperature": {"field": "training.batch_size",
                                 "values": sorted({p["training::batchsize"] for p in params.values()})}},
        "evaluation": {"epoch": max([e for e in stored if e <= epochs], default=epochs)},
    }
    return parse_table(table, str(root))


def _guess_dataset(params: dict) -> str | None:
    text = f"{params.get('training::data_path', '')} {params.get('dataset::dump', '')}".lower()
    return next((dataset for hint, dataset in DATASET_HINTS if hint in text), None)


def _key(spec: ZooSpec, params: dict) -> ModelKey:
    ours = params.get("zoobench::params")
    if ours is not None:
        return ModelKey(cell(spec, ours["load"]["value"], ours["temperature"]["value"]), ours["seed"])
    return ModelKey(cell(spec, params["model::width"], params["training::batchsize"]), params["seed"])


def _import_trial(zoo: ZooStore, spec: ZooSpec, key: ModelKey, trial: Path, params: dict) -> None:
    from zoobench.models import build_model

    recipe = model_spec(spec, key).recipe()
    states = {int(c.name.split("_")[1]): _load_checkpoint(c / "checkpoints")
              for c in sorted(trial.glob("checkpoint_*")) if (c / "checkpoints").exists()}
    model = build_model(recipe)
    for epoch, state in states.items():
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ZoobenchError(f"checkpoint_{epoch:06d} does not fit {spec.model.architecture} "
                                f"{model_spec(spec, key).model.options}: {str(error).splitlines()[0]}") from None
    ours = params.get("zoobench::params") or {**model_params(spec, key, recipe), "imported_from": str(trial),
                                             "ptmz_params": params}
    lines = (trial / "result.json").read_text().splitlines() if (trial / "result.json").exists() else []
    writer = ModelWriter(zoo, key.id, ours)
    try:
        for epoch, line in enumerate(line for line in lines if line.strip()):
            writer.log_epoch(_result_row(json.loads(line), epoch))
        for epoch in sorted(states):
            writer.checkpoint(epoch, states[epoch])
        writer.publish(**params.get("zoobench::marker", {"status": "ok"}))
    except BaseException:
        writer.discard()
        raise


def _load_checkpoint(path: Path) -> dict:
    """A state dict from a third-party pickle: tensors only, never arbitrary objects."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ZoobenchError(f"{path.parent.name}/{path.name} was refused: it is not a plain tensor checkpoint "
                            f"loadable with weights_only=True ({reason[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ZoobenchError(f"{path.parent.name}/{path.name} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _result_row(raw: dict, epoch: int) -> dict[str, Any]:
    """A result.json line in zoobench's form: Ray's bookkeeping dropped, line i taken as epoch i."""
    if "epoch" in raw:  # written by zoobench already
        return raw
    row: dict[str, Any] = {"epoch": epoch}
    for name, value in raw.items():
        if name == "time_this_iter_s":
            row["seconds"] = value
        elif name not in RAY_KEYS and (value is None or isinstance(value, (int, float, bool))):
            row[name] = value
    return row


def export_zoo(zoo: ZooStore, path: str | Path, show_progress: bool = True) -> int:
    """Write the zoo's finished models in the published layout; returns how many were written.

    Each trial folder is written under a temporary name and renamed when complete, so a re-run
    after an interruption skips what is done and never leaves a half-written trial.
    """
    import torch
    from rich.progress import track

    root = atomic.writable_folder(Path(path), "the export")
    atomic.write_json(root / SPEC_FILE, {"source": zoo.spec.source, "spec": zoo.spec.to_table(),
                                         "fingerprint": zoo.spec.fingerprint})
    written = 0
    for record in track(zoo.models(), description=f"exporting {zoo.spec.name}", disable=not show_progress):
        target = root / f"trial_{record.id}"
        if target.exists():
            continue
        staging = root / f".tmp-{record.id}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            params = zoo.params(record.id)
            marker = json.loads((record.path / MARKER).read_text())
            marker.pop("files"), marker.pop("epochs")
            ptmz = {**_ptmz_keys(zoo.spec, params), "zoobench::params": params, "zoobench::marker": marker}
            (staging / "params.json").write_text(json.dumps(ptmz, indent=2, sort_keys=True) + "\n")
            shutil.copyfile(record.path / "result.json", staging / "result.json")
            for epoch in record.epochs:
                (staging / f"checkpoint_{epoch:06d}").mkdir()
                torch.save(zoo.load_state(record.id, epoch), staging / f"checkpoint_{epoch:06d}" / "checkpoints")
            os.rename(staging, target)
            written += 1
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return written


def _ptmz_keys(spec: ZooSpec, params: dict) -> dict[str, Any]:
    """The published zoo's flat parameter keys, so tools written for it can read an export."""
    recipe = params["recipe"]
    model, training = recipe["model"], recipe["training"]
    model_type = next((t for t, depth in RESNETS.items() if model["architecture"] == "resnet"
                       and model["options"].get("depth") == depth), f"zoobench_{model['architecture']}")
    keys = {
        "model::type": model_type, "model::init_type": training["init"], "seed": params["seed"],
        "optim::optimizer": training["optimizer"], "optim::lr": training["lr"], "optim::wd": training["weight_decay"],
        "optim::momentum": training["momentum"],
        "optim::scheduler": "OneCycleLR" if training["schedule"] == "onecycle" else training["schedule"],
        "training::batchsize": training["batch_size"], "training::epochs_train": training["epochs"],
    }
    keys.update({f"model::{name}": value for name, value in model["options"].items()})
    return keys
