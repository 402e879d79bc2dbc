"""The ``zoobench`` command: parses arguments, calls one API function, prints the result.

Heavy imports (torch) happen inside the API functions that need them, so listing and showing zoos
starts in well under a second. Every user error ends as one line on stderr with exit code 2 (bad
input) or 1 (failure), never a traceback.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from zoobench.errors import ZoobenchError
from zoobench.executor import UNITS_PER_GPU

app = typer.Typer(help="Benchmark harness for downstream methods on phase zoos.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False, add_completion=False)
zoo_app = typer.Typer(help="List, inspect, generate and verify zoos.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
methods_app = typer.Typer(help="Method plugins: built-in, installed and local.", no_args_is_help=True)
app.add_typer(methods_app, name="methods")
data_app = typer.Typer(help="Datasets: where they are expected and how to get them.", no_args_is_help=True)
app.add_typer(data_app, name="data")
leaderboard_app = typer.Typer(help="Result tables per phase and cell, method comparisons, published leaderboards.",
                              no_args_is_help=True)
app.add_typer(leaderboard_app, name="leaderboard")

console = Console()
errors = Console(stderr=True)

HomeOption = typer.Option(None, "--home", envvar="ZOOBENCH_HOME", help="Store folder (default: ~/.cache/zoobench).")
ZooOption = typer.Option(..., "--zoo", "-z", help="Zoo name or spec file.")
EpochOption = typer.Option(None, "--epoch", help="Stored epoch to use (default: the spec's metric epoch).")
WorkersOption = typer.Option(None, "--workers", min=1, help="Worker processes (default: one per core).")
DataRootOption = typer.Option(None, "--data-root", envvar="ZOOBENCH_DATA", help="Dataset folder.")
ExecutorOption = typer.Option("local", "--executor", help="Where units run: local (worker processes) or ray "
                              "(a Ray cluster; pip install 'zoobench\\[ray]').")
AddressOption = typer.Option(None, "--address", help="Ray cluster address, e.g. auto (default: a local Ray).")
GpusOption = typer.Option(0.0, "--gpus-per-unit", min=0.0, help="With --executor ray: GPU fraction per unit.")
DeviceOption = typer.Option("auto", "--device", help="Torch device: auto (the GPUs when there are, else the CPU), "
                            "cpu, cuda (every visible GPU) or cuda:N.")
UnitsPerGpuOption = typer.Option(UNITS_PER_GPU, "--units-per-gpu", min=1, help="Units sharing one GPU at a time (local executor).")
PrecisionOption = typer.Option("auto", "--precision", help="Training forward pass: auto (bf16 on GPUs that support "
                               "it, else fp32), fp32 or bf16. Evaluation is always fp32.")
ChannelsLastOption = typer.Option(None, "--channels-last/--no-channels-last", show_default=False,
                                  help="Channels-last memory format for training (default: on GPUs).")
CompileOption = typer.Option(False, "--compile/--no-compile", help="torch.compile the training step.")
PluginOption = typer.Option(None, "--plugin", help="Method plugin module or .py file (repeatable); "
                            "ZOOBENCH_PLUGINS adds more, separated by ':'.")


def _store(home: Optional[Path]):
    from zoobench.store import Store

    return Store(home)


def _executor(kind: str, workers: Optional[int], address: Optional[str], gpus: float, device: str,
              units_per_gpu: int):
    """The executor the CLI's flags ask for."""
    from zoobench.errors import UsageError

    if kind == "local":
        from zoobench.executor import LocalExecutor

        return LocalExecutor(workers, device, units_per_gpu)
    if kind == "ray":
        from zoobench.ray_executor import RayExecutor

        return RayExecutor(address, gpus)
    raise UsageError(f"unknown executor '{kind}'; valid: local, ray")


def _values(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [v for v in text.replace(" ", "").split(",") if v]


@zoo_app.command("list")
def zoo_list(home: Optional[Path] = HomeOption) -> None:
    """Known zoo specs, and how many of each zoo's models the store holds."""
    from zoobench.spec import list_specs

    store = _store(home)
    table = Table("zoo", "dataset", "architecture", "grid", "models", "fingerprint")
    builtin = set()
    for spec in list_specs():
        builtin.add((spec.name, spec.fingerprint))
        table.add_row(spec.name, spec.data.dataset, spec.model.architecture, _grid_size(spec),
                      _done(store.zoo(spec)), spec.fingerprint)
    for zoo in store.zoos():
        if (zoo.spec.name, zoo.spec.fingerprint) not in builtin:
            table.add_row(f"{zoo.spec.name} [dim](stored, from {zoo.spec.source})", zoo.spec.data.dataset,
                          zoo.spec.model.architecture, _grid_size(zoo.spec), _done(zoo), zoo.spec.fingerprint)
    console.print(table)
    console.print(f"store: {store.home}")


def _grid_size(spec) -> str:
    g = spec.grid
    return f"{len(g.load.values)} x {len(g.temperature.values)} x {len(g.seeds)}"


def _done(zoo) -> str:
    g = zoo.spec.grid
    return f"{len(zoo.models())}/{len(g.load.values) * len(g.temperature.values) * len(g.seeds)}"


@zoo_app.command("show")
def zoo_show(
    zoo: str = typer.Argument(..., help="Zoo name or spec file."),
    why: bool = typer.Option(False, "--why", help="Also list every cell's phase with the values and thresholds behind it."),
    home: Optional[Path] = HomeOption,
) -> None:
    """The spec's recipe, its grid, which models of each cell are finished, and the phase map."""
    store = _store(home)
    spec = store.resolve(zoo)
    zoo_store = store.zoo(spec)
    t, g = spec.training, spec.grid
    console.print(f"[bold]{spec.name}[/bold]  {spec.description}")
    console.print(f"spec: {spec.source}   fingerprint: {spec.fingerprint}   store: {zoo_store.path}")
    console.print(f"data: {spec.data.dataset} {spec.data.options or ''}   model: {spec.model.architecture} "
                  f"{spec.model.options}")
    console.print(f"training: {t.optimizer} lr {t.lr:g}, momentum {t.momentum:g}, weight decay {t.weight_decay:g}, "
                  f"{t.schedule}, {t.epochs} epochs, init {t.init}; checkpoints at {list(spec.stored_epochs)}; "
                  f"metrics at epoch {spec.metric_epoch}")
    console.print(f"grid: load = {g.load.field}, temperature = {g.temperature.field}, seeds {list(g.seeds)}")
    status = zoo_store.cells().set_index("cell_id")
    texts = {}
    for cell_id, row in status.iterrows():
        done, diverged, seeds = row["finished"], row["diverged"], row["seeds"]
        style = "red" if diverged else "green" if done == seeds else "yellow" if done else "dim"
        texts[cell_id] = (f"{done}/{seeds}" + (f" ({diverged} div)" if diverged else ""), style)
    console.print(_grid(spec, "finished models per cell (hot at the top)", texts))
    _print_phases(zoo_store, why)


PHASE_STYLE = {"I": "red", "II": "magenta", "III": "yellow", "IV-A": "cyan", "IV-B": "green", "diverged": "bold red",
               "?": "dim"}


def _grid(spec, title: str, texts: dict[str, tuple[str, str]]) -> Table:
    """A load x temperature grid of cell texts, hottest temperature first, as in the paper's figures."""
    from zoobench.grid import cell, hot_first

    g = spec.grid
    table = Table(f"{g.temperature.short} \\ {g.load.short}", *map(str, g.load.values), title=title)
    for temperature in hot_first(g.temperature):
        row = []
        for load in g.load.values:
            text, style = texts.get(cell(spec, load, temperature).id, ("-", "dim"))
            row.append(f"[{style}]{text}")
        table.add_row(f"{temperature:g}", *row)
    return table


def _print_phases(zoo_store, why: bool = False) -> None:
    """The phase map and per-metric summaries, when the zoo has annotations; with `why`, each label's reason."""
    from zoobench.phases import loss_threshold, phase_table

    table = phase_table(zoo_store)
    if table.empty:
        console.print("no annotations yet: `zoobench zoo annotate` computes them")
        return
    spec = zoo_store.spec
    texts = {row["cell_id"]: (row["phase"], PHASE_STYLE[row["phase"]]) for row in table.to_dict("records")}
    console.print(_grid(spec, "phases", texts))
    threshold, how = loss_threshold(spec, table["train_loss"].tolist() if "train_loss" in table else [])
    console.print(f"thresholds: train loss {threshold if threshold is None else f'{threshold:.3g}'} ({how}); "
                  f"|mc| <= {spec.phases.mc:g} is near zero; CKA >= {spec.phases.cka:g} is large")
    summary = Table("metric", "cells", "mean", "min", "max", title="per-metric summary over cells")
    for column in ["train_loss", "test_acc", "gap", "hessian_top_eigenvalue", "hessian_trace", "hessian_log_trace",
                   "cka", "mc", "linear_mc", "test_rel_l2"]:
        if column in table:
            values = table[column].dropna()
            if len(values):
                summary.add_row(column, str(len(values)), f"{values.mean():.4g}", f"{values.min():.4g}",
                                f"{values.max():.4g}")
    console.print(summary)
    if why:
        for row in table.to_dict("records"):
            console.print(f"{row['cell_id']}: {row['phase']}: {row['reason']}", markup=False, highlight=False)


@zoo_app.command("generate")
def zoo_generate(
    zoo: str = typer.Argument(..., help="Zoo name or spec file."),
    home: Optional[Path] = HomeOption,
    loads: Optional[str] = typer.Option(None, "--widths", "--loads", help="Only these load values, e.g. 4,8,16."),
    temperatures: Optional[str] = typer.Option(None, "--batch-sizes", "--temperatures",
                                               help="Only these temperature values, e.g. 32,64."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Only these seeds, e.g. 0,1."),
    workers: Optional[int] = WorkersOption,
    data_root: Optional[Path] = DataRootOption,
    fused: bool = typer.Option(True, "--fused/--no-fused", help="Train a cell's seeds as one fused network "
                               "where the zoo allows it (same result per seed, faster)."),
    device: str = DeviceOption,
    precision: str = PrecisionOption,
    channels_last: Optional[bool] = ChannelsLastOption,
    compile: bool = CompileOption,
    executor: str = ExecutorOption,
    address: Optional[str] = AddressOption,
    gpus: float = GpusOption,
    units_per_gpu: int = UnitsPerGpuOption,
) -> None:
    """Train the models the store lacks; re-running resumes, and the filters choose cells, not recipes."""
    from zoobench.generate import generate
    from zoobench.runtime import Runtime

    store = _store(home)
    spec = store.resolve(zoo)
    try:
        report = generate(spec, store, _values(loads), _values(temperatures), _values(seeds), workers, data_root,
                          Runtime(device, precision, channels_last, compile), fused=fused,
                          executor=_executor(executor, workers, address, gpus, device, units_per_gpu))
    except KeyboardInterrupt:
        errors.print("interrupted: finished models are kept; run the same command again to resume")
        raise typer.Exit(130) from None
    for model_id, problem in report.damaged.items():
        console.print(f"[yellow]retrained damaged model {model_id}: {problem}")
    trained = len(report.trained) + len(report.diverged)
    if trained == 0 and not report.failed:
        console.print(f"nothing to do: all {report.requested} requested models of {spec.name} are in {report.path}")
        return
    if trained:
        console.print(f"trained {trained} models of {spec.name} in {report.seconds:.0f}s "
                      f"({len(report.diverged)} diverged, recorded as results); {report.skipped} were already "
                      f"done; store: {report.path}")
    if report.failed:
        messages = Counter(report.failed.values())
        first, count = messages.most_common(1)[0]
        others = f" ({len(messages) - 1} other errors; see the store)" if len(messages) > 1 else ""
        raise ZoobenchError(f"{len(report.failed)} of {trained + len(report.failed)} models failed, {count} with: "
                            f"{first}{others}; fix the cause and re-run to resume")


@zoo_app.command("annotate")
def zoo_annotate(
    zoo: str = typer.Argument(..., help="Zoo name or spec file."),
    metrics: str = typer.Option("eval,hessian,cka,mc", "--metrics", help="Comma-separated: eval, hessian, cka, mc."),
    epoch: Optional[int] = EpochOption,
    workers: Optional[int] = WorkersOption,
    data_root: Optional[Path] = DataRootOption,
    device: str = DeviceOption,
    executor: str = ExecutorOption,
    address: Optional[str] = AddressOption,
    gpus: float = GpusOption,
    units_per_gpu: int = UnitsPerGpuOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Compute loss-landscape metrics per cell (resumable), then print the phase map."""
    from zoobench.annotate import annotate

    store = _store(home)
    spec = store.resolve(zoo)
    try:
        report = annotate(spec, store, _values(metrics) or [], epoch, workers, data_root, device,
                          executor=_executor(executor, workers, address, gpus, device, units_per_gpu))
    except KeyboardInterrupt:
        errors.print("interrupted: finished cells are kept; run the same command again to resume")
        raise typer.Exit(130) from None
    for metric, done in report.done.items():
        console.print(f"{metric}: annotated {done} cells in {report.seconds[metric]:.0f}s, "
                      f"{report.current[metric]} were already current")
    _print_phases(store.zoo(spec))


@zoo_app.command("verify")
def zoo_verify(zoo: str = typer.Argument(..., help="Zoo name or spec file."), home: Optional[Path] = HomeOption) -> None:
    """Check every stored model against the sizes and SHA-256 hashes in its completion marker."""
    store = _store(home)
    zoo_store = store.zoo(store.resolve(zoo))
    problems = zoo_store.verify()
    for model_id, problem in problems.items():
        errors.print(f"error: model {model_id}: {problem}")
    if problems:
        errors.print(f"error: {len(problems)} damaged models in {zoo_store.path}; "
                     f"`zoobench zoo generate {zoo}` retrains them")
        raise typer.Exit(1)
    console.print(f"all {len(zoo_store.models())} models of {zoo_store.spec.name} are intact")


@zoo_app.command("import")
def zoo_import(
    path: Path = typer.Argument(..., help="Folder of trial folders in the published Phase Transition Model Zoo layout."),
    name: str = typer.Option(..., "--name", help="Name of the zoo in the store."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset, when the params do not tell it."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Import a published zoo; checkpoints are read with weights_only=True, bad trials are skipped."""
    from zoobench.ptmz import import_zoo

    spec, report = import_zoo(path, name, _store(home), dataset)
    for trial, reason in report.skipped.items():
        errors.print(f"skipped {trial}: {reason}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"imported {len(report.imported)} models as {spec.name} ({spec.fingerprint}); "
                  f"{len(report.already)} were already there; {len(report.skipped)} skipped; store: {report.path}")
    if report.skipped:
        raise typer.Exit(1)


@zoo_app.command("export")
def zoo_export(
    zoo: str = typer.Argument(..., help="Zoo name or spec file."),
    path: Path = typer.Argument(..., help="Folder to write."),
    format: str = typer.Option("ptmz", "--format", help="Only 'ptmz': the published Phase Transition Model Zoo layout."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Write a zoo's finished models in the published layout (imports back losslessly)."""
    from zoobench.errors import UsageError
    from zoobench.ptmz import export_zoo

    if format != "ptmz":
        raise UsageError(f"unknown export format '{format}'; valid: ptmz")
    store = _store(home)
    zoo_store = store.zoo(store.resolve(zoo))
    written = export_zoo(zoo_store, path)
    console.print(f"exported {written} models of {zoo_store.spec.name} to {path}")


@methods_app.command("list")
def methods_list(plugins: Optional[list[str]] = PluginOption) -> None:
    """Every method found: name, version, headline metric, scope and where it comes from."""
    from zoobench.plugins import discover

    found = discover(plugins or [])
    table = Table("method", "version", "headline", "scope", "origin")
    for name in found.names():
        method = found.get(name)
        direction = "higher is better" if method.higher_is_better else "lower is better"
        table.add_row(name, method.version, f"{method.headline} ({direction})", method.scope, found.origin(name))
    console.print(table)
    for broken in found.broken:
        errors.print(f"warning: plugin {broken.origin} skipped: {broken.error}", markup=False, highlight=False,
                     soft_wrap=True)


@app.command("run")
def run_method(
    method: str = typer.Option(..., "--method", "-m", help="Method name (`zoobench methods list`)."),
    zoo: str = ZooOption,
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Method option, key=value (repeatable)."),
    plugins: Optional[list[str]] = PluginOption,
    no_generate: bool = typer.Option(False, "--no-generate", help="Use only the models and annotations stored."),
    epoch: Optional[int] = EpochOption,
    workers: Optional[int] = WorkersOption,
    data_root: Optional[Path] = DataRootOption,
    device: str = DeviceOption,
    precision: str = PrecisionOption,
    channels_last: Optional[bool] = ChannelsLastOption,
    compile: bool = CompileOption,
    executor: str = ExecutorOption,
    address: Optional[str] = AddressOption,
    gpus: float = GpusOption,
    units_per_gpu: int = UnitsPerGpuOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Run a method on every cell of a zoo (training and annotating what is missing), then report by phase."""
    from zoobench.runner import run
    from zoobench.runtime import Runtime

    store = _store(home)
    spec = store.resolve(zoo)
    try:
        report = run(method, spec, store, _settings(settings or []), plugins or [], epoch, not no_generate, workers,
                     data_root, Runtime(device, precision, channels_last, compile),
                     executor=_executor(executor, workers, address, gpus, device, units_per_gpu))
    except KeyboardInterrupt:
        errors.print("interrupted: finished cells are kept; run the same command again to resume")
        raise typer.Exit(130) from None
    _print_run(report, spec)
    if report.failed:
        messages = Counter(report.failed.values())
        first, count = messages.most_common(1)[0]
        raise ZoobenchError(f"{len(report.failed)} of {report.ran} units failed, {count} with: {first}; each "
                            f"unit's traceback is in {report.results.folder}; the other units' results are stored")


def _settings(pairs: list[str]) -> dict[str, str]:
    from zoobench.errors import UsageError

    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got '{pair}'")
        settings[key.strip()] = value.strip()
    return settings


def _print_run(report, spec) -> None:
    """The results grid of the headline metric, the phase-resolved table and the heatmap's path."""
    from rich.markup import escape

    from zoobench import tables
    from zoobench.figures import heatmap
    from zoobench.method import config_table

    method, results = report.method, report.results
    table = report.table()
    config = ", ".join(f"{k}={v}" for k, v in config_table(report.config).items()) or "no options"
    title = f"{spec.name} ({spec.fingerprint}) | {method.name} v{method.version}, config {results.config_hash}: {config}"
    shown = escape(title)  # config values may hold brackets that rich would read as markup
    for line in report.prepared:
        console.print(f"{spec.name}: {line}")
    console.print(f"{method.name} on {spec.name}: {report.ran} units computed in {report.seconds:.0f}s, "
                  f"{report.current} already current, {len(report.failed)} failed; results: {results.folder}",
                  soft_wrap=True)
    for unit, why in report.skipped.items():
        console.print(f"[yellow]skipped {unit}: {why}")
    if table.empty:
        return
    headline = method.headline
    metrics = tables.metrics(table, headline)
    if method.scope == "zoo":
        units = Table("unit", *metrics, title=shown)
        for row in table.to_dict("records"):
            units.add_row(row["unit"], *(_number(row.get(m)) for m in metrics))
        units.add_row("[bold]mean", *(_number(table[m].mean()) for m in metrics))
        console.print(units)
        return
    direction = "higher is better" if method.higher_is_better else "lower is better"
    texts = {row["unit"]: (_number(row.get(headline)) if row["status"] == "ok" else "fail",
                           PHASE_STYLE.get(row.get("phase"), "dim") if row["status"] == "ok" else "red")
             for row in table.to_dict("records")}
    console.print(_grid(spec, f"{headline} ({direction}); colour = phase", texts))
    grid = tables.phase_grid(tables.phase_table(table, headline), headline)
    by_phase = Table(*map(escape, grid.columns), title=f"by phase (mean ± std over cells): {shown}")
    for row in grid.itertuples(index=False):
        by_phase.add_row(*(escape(str(v)) for v in row))
    console.print(by_phase)
    if headline not in table:
        console.print(f"[yellow]{method.name} reported no '{headline}' on {spec.name} (e.g. accuracy on a task "
                      f"without classes): no heatmap")
        return
    path = heatmap(table, spec, headline, results.folder / f"heatmap-{headline}.png", title,
                   phases=dict(zip(table["unit"], table["phase"])))
    console.print(f"heatmap: {path}", soft_wrap=True)


def _number(value) -> str:
    import math

    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


@app.command("report")
def report(
    zoo: str = ZooOption,
    out: Path = typer.Option(..., "--out", help="HTML file to write."),
    methods: Optional[list[str]] = typer.Option(None, "--method", "-m", help="Only these methods (repeatable; "
                                                "default: every method with stored results)."),
    comparisons: Optional[list[str]] = typer.Option(None, "--compare", help="Two methods to compare, M1,M2 "
                                                    "(repeatable)."),
    screenshot: Optional[Path] = typer.Option(None, "--screenshot", help="Also render the page in headless "
                                              "Chromium and save this PNG (checks that it renders)."),
    plugins: Optional[list[str]] = PluginOption,
    epoch: Optional[int] = EpochOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """One self-contained HTML file: zoo sheet, every method's tables and heatmap, comparisons, provenance."""
    from zoobench.errors import UsageError
    from zoobench.html_report import write_report

    pairs = []
    for text in comparisons or []:
        names = [n.strip() for n in text.split(",")]
        if len(names) != 2 or not all(names):
            raise UsageError(f"--compare expects two methods as M1,M2, got '{text}'")
        pairs.append((names[0], names[1]))
    store = _store(home)
    path = write_report(store.resolve(zoo), out, store, methods or None, pairs, plugins or [], epoch)
    console.print(f"report: {path}", soft_wrap=True, highlight=False)
    if screenshot is not None:
        from zoobench.browser import screenshot as render

        console.print(f"rendered without errors: {render(path, screenshot)}", soft_wrap=True, highlight=False)


@data_app.command("download")
def data_download(
    dataset: str = typer.Argument(..., help="Dataset name, e.g. cifar10."),
    data_root: Path = typer.Option(..., "--data-root", envvar="ZOOBENCH_DATA", help="Folder to download into."),
) -> None:
    """Fetch a dataset with torchvision's downloader (needs network access)."""
    from zoobench.datasets import DATASETS
    from zoobench.registry import load_target

    info = DATASETS.get(dataset)
    if not info.download:
        console.print(f"{dataset} needs no download: {info.obtain}")
        return
    load_target(info.download, f"dataset '{dataset}'")(info, data_root)
    console.print(f"{dataset} is in {data_root}")


# ---- leaderboard ------------------------------------------------------------------------------------

OUTCOME_STYLE = {"win": ("W", "green"), "tie": ("T", "yellow"), "loss": ("L", "red"), "missing": ("-", "dim")}


@leaderboard_app.command("show")
def leaderboard_show(
    zoo: str = ZooOption,
    method: Optional[str] = typer.Option(None, "--method", "-m", help="One method in detail (default: the headline "
                                         "of every method with stored results, per phase)."),
    format: str = typer.Option("rich", "--format", help="rich, csv, markdown or json."),
    which: str = typer.Option("both", "--table", help="With --method: phases, cells or both."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Method option of --method, key=value "
                                                 "(repeatable; default: the default config)."),
    plugins: Optional[list[str]] = PluginOption,
    epoch: Optional[int] = EpochOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Stored results as tables: per phase (mean, std, the headline's bootstrap CI) and per cell. Runs nothing."""
    from zoobench import leaderboard, tables
    from zoobench.errors import UsageError

    if format not in tables.FORMATS:
        raise UsageError(f"unknown format '{format}'; valid: {', '.join(tables.FORMATS)}")
    if which not in ("phases", "cells", "both"):
        raise UsageError(f"unknown table '{which}'; valid: phases, cells, both")
    if settings and not method:
        raise UsageError("--set needs --method")
    store = _store(home)
    spec = store.resolve(zoo)
    if method:
        board = leaderboard.from_store(method, spec, store, _settings(settings or []), plugins or [], epoch)
        if format != "rich":
            print(leaderboard.render_board(board, format, which), end="")
            return
        _print_board(board, spec, which)
        return
    names = leaderboard.stored_methods(spec, store, plugins or [], epoch)
    if not names:
        raise ZoobenchError(f"no method has stored results of its default config on {spec.name} in {store.home}; "
                            f"run `zoobench run --method M --zoo {spec.name}` first")
    boards = [leaderboard.from_store(name, spec, store, None, plugins or [], epoch) for name in names]
    if format != "rich":
        print(leaderboard.render_overview(boards, format), end="")
        return
    grid = leaderboard.overview_grid(leaderboard.overview(boards))
    table = Table(title=f"{spec.name} ({spec.fingerprint}): headline per phase (↑ higher, ↓ lower is better), "
                  f"mean [{tables.CI_NOTE}] n=cells; default configs")
    for index, column in enumerate(grid.columns):
        table.add_column(column, no_wrap=index < 2)
    for row in grid.itertuples(index=False, name=None):
        name, headline, *phases = map(str, row)
        headline = headline.replace(" (higher is better)", " ↑").replace(" (lower is better)", " ↓")
        table.add_row(name, headline, *(v.replace(" [", "\n[").replace("] ", "]\n") for v in phases))
    console.print(table)


def _print_board(board, spec, which: str) -> None:
    """One method's results: the headline over the grid coloured by phase, the phase table, the cells."""
    from rich.markup import escape

    from zoobench import tables

    p = board.provenance
    direction = "higher is better" if board.higher_is_better else "lower is better"
    console.print(f"{escape(board.title)}; epoch {p['epoch']}; {p['ok_units']}/{p['units']} units ok, "
                  f"{p['models']} models; results: {board.source}", soft_wrap=True, highlight=False)
    cells, phases = board.cells(), board.phases()
    if board.scope != "zoo" and which == "both":
        texts = {row["unit"]: (_number(row.get(board.headline)) if row["status"] == "ok" else "fail",
                               PHASE_STYLE.get(row.get("phase"), "dim") if row["status"] == "ok" else "red")
                 for row in cells.to_dict("records")}
        console.print(_grid(spec, f"{board.headline} ({direction}); colour = phase", texts))
    if which in ("phases", "both"):
        unit = "units" if board.scope == "zoo" else "cells"
        grid = tables.phase_grid(phases, board.headline, unit=unit)
        shown = Table(*grid.columns, title=escape(f"by phase: {board.method}; mean ± std over {unit}; "
                                                  f"{tables.CI_NOTE.replace('cells', unit)}"))
        for row in grid.itertuples(index=False, name=None):
            shown.add_row(*(escape(str(v)) if isinstance(v, str) else "" for v in row))
        console.print(shown)
    if which == "cells" or (which == "both" and board.scope == "zoo"):
        if which == "both":  # the zoo-scope overview: the headline per unit
            cells = cells[[c for c in ("unit", "status", "n_models", board.headline) if c in cells]]
        what = "per unit" if board.scope == "zoo" else "per cell (seed means)"
        shown = Table(*cells.columns, title=escape(f"{board.method} {what}"))
        for row in cells.itertuples(index=False, name=None):
            shown.add_row(*(_number(v) if isinstance(v, float) else str(v) for v in row))
        console.print(shown)


@leaderboard_app.command("compare")
def leaderboard_compare(
    first: str = typer.Argument(..., help="Method name (its stored results) or a published leaderboard folder."),
    second: str = typer.Argument(..., help="Method name or published leaderboard folder (e.g. "
                                 "leaderboards/digits_mlp/rebasin)."),
    zoo: str = ZooOption,
    metric: Optional[str] = typer.Option(None, "--metric", help="Compare on this metric (both must report it)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the figure and tables (default: the zoo's "
                                       "comparisons/ folder in the store)."),
    plugins: Optional[list[str]] = PluginOption,
    epoch: Optional[int] = EpochOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Two methods side by side on shared colour limits, their difference (ties hatched), wins/ties/losses per phase."""
    from rich.markup import escape

    from zoobench.compare import compare

    store = _store(home)
    spec = store.resolve(zoo)
    result = compare(first, second, spec, store, metric, out, plugins or [], epoch)
    a, b = result.first.label, result.second.label
    better = "higher" if result.higher_is_better else "lower"
    console.print(escape(f"{a} vs {b} on {result.metric} ({better} is better); first: {result.first.title}; "
                         f"second: {result.second.title}"), soft_wrap=True, highlight=False)
    console.print(escape(f"a tie is |{a} - {b}| <= the cell's seed noise: {result.noise_source}"),
                  soft_wrap=True, highlight=False)
    texts = {row["unit"]: (OUTCOME_STYLE[row["outcome"]][0] + (f"{row['difference']:+.2f}"
                                                               if row["outcome"] != "missing" else ""),
                           OUTCOME_STYLE[row["outcome"]][1]) for row in result.cells.to_dict("records")}
    console.print(_grid(spec, escape(f"{a} - {b}: W = {a} better beyond seed noise, T = tie, L = {b} better"),
                        texts))
    wins = Table("phase", "cells", f"wins ({a})", "ties", f"losses ({a})", "missing", f"mean {a} - {b}",
                 title=escape(f"{result.metric}: wins/ties/losses of {a} against {b} per phase"))
    for row in result.phases.to_dict("records"):
        wins.add_row(f"[{PHASE_STYLE.get(row['phase'], 'bold')}]{row['phase']}", str(row["cells"]),
                     str(row["wins"]), str(row["ties"]), str(row["losses"]), str(row["missing"]),
                     _number(row["mean_difference"]))
    console.print(wins)
    for name, path in result.files.items():
        console.print(f"{name}: {path}", soft_wrap=True, highlight=False)


@leaderboard_app.command("publish")
def leaderboard_publish(
    zoo: str = ZooOption,
    methods: Optional[list[str]] = typer.Option(None, "--method", "-m", help="Method to publish (repeatable; "
                                                "default: every built-in method with stored results)."),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Leaderboards folder."),
    plugins: Optional[list[str]] = PluginOption,
    epoch: Optional[int] = EpochOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Write the stored default-config results as a leaderboard (CSV, Markdown, PNG) and its index. Runs nothing."""
    from zoobench.leaderboard import publish

    store = _store(home)
    spec = store.resolve(zoo)
    report = publish(spec, store, methods or None, out, plugins or [], epoch)
    for folder in report.folders:
        console.print(f"published {folder}", soft_wrap=True, highlight=False)
    console.print(f"index: {report.index}", soft_wrap=True, highlight=False)


def main() -> None:
    # click's UsageError, found through its public subclass: typer vendors its own click since 0.2x
    usage_error = next(kind for kind in typer.BadParameter.__mro__ if kind.__name__ == "UsageError")
    try:
        sys.exit(app(standalone_mode=False))
    except ZoobenchError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except usage_error as error:  # a malformed command line: one line like every other error, not a box
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as typer shows it
            error.show()
            sys.exit(2)
        where = f"; see `{error.ctx.command_path} --help`" if error.ctx is not None else ""
        errors.print(f"error: {error.format_message().rstrip('.')}{where}", markup=False, highlight=False,
                     soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)


