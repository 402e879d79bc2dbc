"""Reference zoos: the Phase Transition Model Zoo's published per-model metrics as metrics-only zoos.

The authors published, per zoo, ``summary_metrics/<zoo>_summary.csv`` (Schürholt et al. 2025; code
MIT, data CC BY 4.0): one row per model and epoch with train/test loss and accuracy and, at the
annotated epochs, the loss-landscape metrics of the model's cell. `import_summary` reads such a file,
as published (a quoted ``model`` column with the Ray Tune trial name, every epoch) or reduced to the
annotated epochs (the files shipped in ``zoobench.zoos/reference/ptmz``, reachable as
``<zoo>@ptmz``), and stores a zoo without weights: the models with their per-epoch results, and the
published annotations of every annotated epoch (`zoobench.store.published`).

Real data has faults. Each kind is reported in one line and only what is consistent is kept: runs
whose trial name contradicts their rows, two runs claiming one (load, temperature, seed), a second
experiment with another recipe interleaved in the file, seeds whose rows disagree on their cell's
annotation. Two runs that claim one cell are never averaged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from zoobench.data import DATASETS
from zoobench.errors import UsageError
from zoobench.registry import unknown_name
from zoobench.spec import ZooSpec, load_spec, parse_table
from zoobench.spec.grid import ModelKey, cell, model_spec
from zoobench.store import published
from zoobench.store.writer import ModelWriter, model_params
from zoobench.store.zoo import sha256

SUFFIX = "@ptmz"
CITATION = ("Schürholt, Meynent, Zhou, Lu, Yang, Borth: A Model Zoo on Phase Transitions in Neural Networks "
            "(2025); ModelZoos/PhaseTransitionModelZoo summary_metrics, CC BY 4.0")
LOADS = ("width", "embedding_dim", "model_dim")
PERFORMANCE = ("train_loss", "train_acc", "test_loss", "test_acc")
REQUIRED = ("trial_id", "seed", "batchsize", "epoch", *PERFORMANCE)
RECIPE = {"lr": "lr", "wd": "weight_decay", "init_type": "init"}  # summary column -> training field
FILE_NAME = re.compile(r"(svhn|cifar10|cifar100|tinyimagenet)_(resnet18|resnet50|vit)(?:_summary)?")
TRIAL_KEYS = {"model_width": "load", "model_embedding_dim": "load", "model_model_dim": "load",
              "training_batchsize": "batchsize", "seed": "seed"}


@dataclass
class SummaryReport:
    path: Path  # the zoo in the store
    models: int = 0  # models stored now
    added: int = 0  # of which this import wrote
    epochs: list[int] = field(default_factory=list)  # epochs with published annotations
    faults: list[str] = field(default_factory=list)  # one line per kind of fault found and handled


def shipped() -> dict[str, Path]:
    """Reference zoo name (``cifar10_r18@ptmz``) -> the summary file shipped with zoobench."""
    folder = resources.files("zoobench.zoos") / "reference" / "ptmz"
    found = {}
    for entry in folder.iterdir():
        like = builtin_like(Path(entry.name))
        if entry.name.endswith(".csv") and like is not None:
            found[like + SUFFIX] = Path(str(entry))
    return dict(sorted(found.items()))


def builtin_like(path: Path) -> str | None:
    """The built-in zoo a summary file's name says it is (``cifar10_resnet18_summary.csv`` -> cifar10_r18)."""
    match = FILE_NAME.fullmatch(path.stem)
    if match is None:
        return None
    dataset, arch = match.groups()
    return f"{dataset}_{ {'resnet18': 'r18', 'resnet50': 'r50'}.get(arch, arch)}"


def open_shipped(store: Any, name: str) -> ZooSpec:
    """The spec of a shipped reference zoo, importing it into `store` (a `Store`) on first use."""
    files = shipped()
    if name not in files:
        raise unknown_name("reference zoo", name, list(files))
    digest = sha256(files[name])
    done = [zoo.spec for zoo in store.zoos() if zoo.spec.name == name and published.imported(zoo) == digest]
    return done[0] if done else import_summary(files[name], name, store, show_progress=False)[0]


def read_summary(path: Path, like: ZooSpec) -> tuple[Any, list[str]]:
    """The consistent rows of a summary file (pandas; its load column renamed ``load``) and one line
    per kind of fault found in it."""
    import pandas as pd

    try:
        rows = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read it as CSV ({str(error).splitlines()[0]})") from None
    load = next((c for c in LOADS if c in rows), None)
    missing = [c for c in REQUIRED if c not in rows] + ([] if load else ["width or embedding_dim"])
    if missing:
        raise UsageError(f"{path} is not a published PTMZ summary file: it lacks the column(s) "
                         f"{', '.join(missing)}; expected {', '.join(REQUIRED)} and a load column")
    rows = rows.rename(columns={load: "load"})
    faults = []
    if "model" in rows:
        rows, fault = _drop_contradicted(rows)
        faults += fault
    rows, fault = _one_experiment(rows, like)
    faults += fault
    rows, fault = _drop_duplicates(rows)
    faults += fault
    return rows, faults


def _drop_contradicted(rows) -> tuple[Any, list[str]]:
    """Drop runs whose Ray Tune trial name states another load, batch size or seed than their rows."""
    bad = {}
    for name, trial in rows.groupby("model", sort=False):
        first = trial.iloc[0]
        for key, value in re.findall(r"(model_width|model_embedding_dim|model_model_dim|training_batchsize|seed)="
                                     r"(\d+)", str(name)):
            if int(value) != int(first[TRIAL_KEYS[key]]):
                bad[name] = f"{first['trial_id']} (name: {key}={value}, rows: {int(first[TRIAL_KEYS[key]])})"
    if not bad:
        return rows.drop(columns="model"), []
    examples = ", ".join(list(bad.values())[:2])
    return (rows[~rows["model"].isin(bad)].drop(columns="model"),
            [f"{len(bad)} runs whose trial name contradicts their rows, e.g. {examples}: dropped"])


def _one_experiment(rows, like: ZooSpec) -> tuple[Any, list[str]]:
    """Keep one recipe: the one of the built-in spec, else the annotated one, else the largest."""
    columns = [c for c in RECIPE if c in rows]
    groups = list(rows.groupby(columns, sort=False)) if columns else []
    if len(groups) <= 1:
        return rows, []

    def rank(group) -> tuple:
        values, frame = group
        matches = all(_close(v, getattr(like.training, RECIPE[c])) for c, v in zip(columns, values))
        return matches, bool(frame[list(published.COLUMNS.keys() & set(frame))].notna().any().any()), len(frame)

    kept_values, kept = max(groups, key=rank)
    described = ", ".join(f"{c} {v}" for c, v in zip(columns, kept_values))
    others = [f"{len(frame['trial_id'].unique())} runs with {', '.join(f'{c} {v}' for c, v in zip(columns, values))}"
              for values, frame in groups if frame is not kept]
    return kept, [f"a second experiment is interleaved ({'; '.join(others)}): dropped; kept {described}"]


def _drop_duplicates(rows) -> tuple[Any, list[str]]:
    """Drop every run of a (load, batch size, seed) that more than one run claims (never average them)."""
    trials = rows.groupby(["load", "batchsize", "seed"])["trial_id"].unique()
    claimed = trials[trials.map(len) > 1]
    if claimed.empty:
        return rows, []
    example = ", ".join(f"w{k[0]}-bs{k[1]}-s{k[2]} ({' '.join(v)})" for k, v in list(claimed.items())[:2])
    dropped = {t for v in claimed for t in v}
    return (rows[~rows["trial_id"].isin(dropped)],
            [f"{len(claimed)} (load, batch size, seed) keys claimed by {len(dropped)} runs, e.g. {example}: "
             f"all dropped, not averaged"])


def import_summary(path: str | Path, name: str, store: Any, like: str | None = None,
                   show_progress: bool = True) -> tuple[ZooSpec, SummaryReport]:
    """Store the published metrics in `path` as the metrics-only zoo `name` in `store` (a `Store`);
    re-running adds only what is missing. `like` names the built-in zoo the file belongs to (default:
    from the file name)."""
    from rich.progress import track

    path = Path(path)
    like = like or builtin_like(path)
    if like is None:
        raise UsageError(f"cannot tell which zoo {path.name} belongs to; name it like the published files "
                         f"(<dataset>_<resnet18|resnet50|vit>_summary.csv) or pass --like, e.g. --like cifar10_r18")
    base = load_spec(like)
    rows, faults = read_summary(path, base)
    faults += _recipe_differences(rows, base)
    annotated = sorted(int(e) for e in rows.loc[rows[[c for c in published.COLUMNS if c in rows]].notna().any(axis=1),
                                                "epoch"].unique())
    spec = _spec(base, name, rows, annotated, path)
    zoo = store.zoo(spec)
    report = SummaryReport(zoo.path, epochs=annotated)
    faults += _grid_faults(rows, spec) + _seed_faults(rows, spec)
    with zoo.writing():
        models = list(rows.groupby(["load", "batchsize", "seed"], sort=True))
        for (load, batch, seed), frame in track(models, description=f"importing {name}", disable=not show_progress):
            key = ModelKey(cell(spec, _number(load), int(batch)), int(seed))
            if zoo.problem(key.id) is not None:
                _write_model(zoo, spec, key, frame, path)
                report.added += 1
        report.models = len(models)
        for epoch in annotated:
            cells, conflicts = published.cells(rows[rows["epoch"] == epoch].to_dict("records"),
                                               lambda row: cell(spec, _number(row["load"]), int(row["batchsize"])).id)
            published.write(zoo, epoch, cells, {"source": f"{path.name} (published summary metrics)",
                                                 "citation": CITATION})
            if conflicts:
                faults.append(f"epoch {epoch}: {len(conflicts)} cells whose seeds' rows carry different annotation "
                              f"values ({', '.join(conflicts[:3])}): their annotations dropped")
        published.mark_imported(zoo, sha256(path))
    report.faults = faults
    return spec, report


def _spec(base: ZooSpec, name: str, rows, annotated: list[int], path: Path) -> ZooSpec:
    table = base.to_table()
    table["zoo"] = {"name": name, "description": f"published metrics of {base.name}, no weights ({CITATION})"}
    table["grid"]["load"]["values"] = sorted(_number(v) for v in rows["load"].unique())
    table["grid"]["temperature"]["values"] = sorted(int(v) for v in rows["batchsize"].unique())
    table["grid"]["seeds"] = sorted(int(v) for v in rows["seed"].unique())
    table["evaluation"] = {"epoch": annotated[0] if annotated else int(rows["epoch"].max())}
    return parse_table(table, str(path))


def _write_model(zoo, spec: ZooSpec, key: ModelKey, frame, path: Path) -> None:
    params = {**model_params(spec, key, model_spec(spec, key).recipe()),
              "published": {"file": path.name, "trial_id": str(frame["trial_id"].iloc[0])}}
    writer = ModelWriter(zoo, key.id, params)
    try:
        for row in frame.sort_values("epoch").to_dict("records"):
            writer.log_epoch({"epoch": int(row["epoch"]), **{k: _finite(row[k]) for k in PERFORMANCE}})
        writer.publish("ok", source="published summary metrics, no weights")
    except BaseException:
        writer.discard()
        raise


def _recipe_differences(rows, base: ZooSpec) -> list[str]:
    found = []
    for column, field_name in RECIPE.items():
        values = rows[column].unique() if column in rows else []
        if len(values) == 1 and not _close(values[0], getattr(base.training, field_name)):
            found.append(f"the file's {column} is {values[0]}, {base.name}'s spec says "
                         f"{getattr(base.training, field_name)}: the spec's recipe is kept")
    return found


def _grid_faults(rows, spec: ZooSpec) -> list[str]:
    present = set(zip(rows["load"].map(_number), rows["batchsize"].astype(int), rows["seed"].astype(int)))
    g = spec.grid
    missing = [ModelKey(cell(spec, load, batch), seed).id for load in g.load.values for batch in g.temperature.values
               for seed in g.seeds if (load, batch, seed) not in present]
    if not missing:
        return []
    return [f"{len(missing)} of {len(g.load.values) * len(g.temperature.values) * len(g.seeds)} models of the grid "
            f"are not in the file, e.g. {', '.join(missing[:3])}"]


def _seed_faults(rows, spec: ZooSpec) -> list[str]:
    """At the evaluation epoch: runs stuck at chance (test accuracy at most twice chance; kept, they are
    a finding), and seeds that are not seeds (every cell's seeds identical)."""
    classes = DATASETS.get(spec.data.dataset).num_outputs
    at = rows[rows["epoch"] == spec.metric_epoch]
    stuck = at[at["test_acc"] <= 2 / classes]
    ids = [ModelKey(cell(spec, _number(r["load"]), int(r["batchsize"])), int(r["seed"])).id
           for r in stuck.to_dict("records")]
    faults = [f"{len(ids)} runs at chance (test accuracy <= 2/{classes}) at epoch {spec.metric_epoch}: kept, their "
              f"cells' published metrics include them, e.g. {', '.join(ids[:3])}"] if ids else []
    spread = at.groupby(["load", "batchsize"])["test_acc"].agg(lambda v: v.nunique() if len(v) > 1 else None).dropna()
    if len(spread) and (spread == 1).all():
        faults.append(f"at epoch {spec.metric_epoch} every cell's seeds have identical test accuracy: the per-seed "
                      f"values are cell means")
    return faults


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return math.isclose(float(a), float(b), rel_tol=1e-9)


def _number(value: Any) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
