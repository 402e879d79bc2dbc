"""Boards: one method's results on one zoo, read from the store or from a published leaderboard folder.

A *board* is one method's results on one zoo (one version, config and epoch): read from the store
(`from_store`) or from a published leaderboard folder (`from_folder`), shown per phase and per
cell, rendered as CSV, Markdown or JSON, and set side by side with others (`overview`). Publishing
boards as leaderboard folders is `zoobench.reports.leaderboard`; comparing two is
`zoobench.reports.compare`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from zoobench.errors import UsageError, ZoobenchError
from zoobench.landscape.phases import PHASES
from zoobench.reports import tables
from zoobench.spec import ZooSpec
from zoobench.store import Store

PROVENANCE = "provenance.json"
NOISE = "seed_noise.csv"
TABLES = ("phases", "cells", "both")


@dataclass
class Board:
    """One method's results on one zoo: provenance and the per-unit table (as `tables.cell_table`)."""

    provenance: dict[str, Any]
    table: Any  # pandas: unit, load, temperature, phase, status, n_models, then the numbers
    source: str  # where it was read from
    published: bool = False

    @property
    def method(self) -> str:
        return self.provenance["method"]

    @property
    def headline(self) -> str:
        return self.provenance["headline"]

    @property
    def higher_is_better(self) -> bool:
        return bool(self.provenance["higher_is_better"])

    @property
    def scope(self) -> str:
        return self.provenance["scope"]

    @property
    def label(self) -> str:
        return f"{self.method} (published)" if self.published else self.method

    @property
    def title(self) -> str:
        p = self.provenance
        config = ", ".join(f"{k}={v}" for k, v in p["config"].items()) or "no options"
        origin = " (published)" if self.published else ""
        return (f"{p['zoo']} ({p['fingerprint']}) | {p['method']} v{p['version']}{origin}, config {p['config_hash']}: "
                f"{config}")

    def metrics(self) -> list[str]:
        return tables.metrics(self.table, self.headline)

    def cells(self):
        return tables.cell_table(self.table, self.headline)

    def phases(self, resamples: int = tables.RESAMPLES):
        return tables.phase_table(self.table, self.headline, self.scope, resamples)


# ---- reading boards ---------------------------------------------------------------------------------


def provenance(results) -> dict[str, Any]:
    """What a published board says about where its numbers come from: nothing machine- or time-dependent."""
    from zoobench import __version__

    table = results.table()
    ok = table[table["status"] == "ok"] if not table.empty else table
    models = 0 if ok.empty else int(ok["n_models"].max() if results.method.scope == "zoo" else ok["n_models"].sum())
    return {"zoo": results.zoo.spec.name, "fingerprint": results.zoo.spec.fingerprint,
            "method": results.method.name, "version": results.method.version, "config": results.config,
            "config_hash": results.config_hash, "epoch": results.epoch, "headline": results.method.headline,
            "higher_is_better": results.method.higher_is_better, "scope": results.method.scope,
            "units": len(table), "ok_units": len(ok), "models": models, "zoobench": __version__,
            **results.spec_record()}


def from_store(method: str, spec: ZooSpec, store: Store | None = None, settings: dict[str, str] | None = None,
               plugins: Sequence[str] = (), epoch: int | None = None) -> Board:
    """The stored results of `method` (with `settings`, default config otherwise) on the zoo; nothing is run."""
    from zoobench.bench.plugins import discover
    from zoobench.bench.results import MethodResults
    from zoobench.bench.runner import results_table
    from zoobench.method import make_config

    method_class = discover(plugins).get(method)
    epoch = spec.metric_epoch if epoch is None else epoch
    store = store or Store()
    results = MethodResults(store.zoo(spec), method_class, make_config(method_class, settings), epoch)
    table = results_table(results)
    if table.empty:
        sets = "".join(f" --set {k}={v}" for k, v in (settings or {}).items())
        raise ZoobenchError(f"no stored results of {method} (config {results.config_hash}) on {spec.name} in "
                            f"{store.home}; run `zoobench run --method {method} --zoo {spec.name}{sets}` first")
    return Board(provenance(results), tables.cell_table(table, method_class.headline), str(results.folder))


def from_folder(path: str | Path, spec: ZooSpec | None = None) -> Board:
    """A published board (a leaderboard method folder); with `spec`, it must be of that zoo and fingerprint."""
    import pandas as pd

    folder = Path(path)
    try:
        meta = json.loads((folder / PROVENANCE).read_text())
    except (OSError, ValueError):
        raise UsageError(f"{folder} is not a published leaderboard folder: no readable {PROVENANCE} "
                         f"(expected e.g. leaderboards/<zoo>/<method>/)") from None
    name = "units.csv" if meta.get("scope") == "zoo" else "cells.csv"
    try:
        table = pd.read_csv(folder / name, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as error:
        raise UsageError(f"{folder}: cannot read {name}: {error}") from None
    if spec is not None and (meta.get("zoo"), meta.get("fingerprint")) != (spec.name, spec.fingerprint):
        raise UsageError(f"{folder} holds results on {meta.get('zoo')} ({meta.get('fingerprint')}), not on "
                         f"{spec.name} ({spec.fingerprint}); compare results on the same zoo")
    return Board(meta, tables.cell_table(table, meta["headline"]), str(folder), published=True)


def board(side: Any, spec: ZooSpec, store: Store | None = None, plugins: Sequence[str] = (),
          epoch: int | None = None) -> Board:
    """A Board as given, a published folder (a path holding provenance.json), or a method name (the store)."""
    if isinstance(side, Board):
        return side
    text = str(side)
    if isinstance(side, Path) or "/" in text or "\\" in text or (Path(text) / PROVENANCE).exists():
        return from_folder(text, spec)
    return from_store(text, spec, store, None, plugins, epoch)


def stored_methods(spec: ZooSpec, store: Store | None = None, plugins: Sequence[str] = (),
                   epoch: int | None = None, builtin_only: bool = False) -> list[str]:
    """Methods with stored results of their default config on the zoo (alphabetical)."""
    from zoobench.bench.plugins import discover
    from zoobench.bench.results import MethodResults
    from zoobench.method import make_config

    found = discover(plugins)
    zoo = (store or Store()).zoo(spec)
    epoch = spec.metric_epoch if epoch is None else epoch
    names = []
    for name in found.names():
        method = found.get(name)
        if builtin_only and not method.__module__.startswith("zoobench.methods"):
            continue
        if MethodResults(zoo, method, make_config(method), epoch).records():
            names.append(name)
    return names


def overview(boards: Sequence[Board]):
    """Headline per method and phase (tidy): method, version, config_hash, headline, higher_is_better,
    phase, cells, models, mean, std, ci_low, ci_high. A zoo-scope method has one row: its first group
    ("all", or the random splits where its units are of several kinds)."""
    import pandas as pd

    frames = []
    for b in boards:
        rows = tables.headline_rows(b.phases(), b.headline)
        if b.scope == "zoo":
            rows = rows.head(1)
        frames.append(rows.drop(columns="metric").assign(
            method=b.method, version=b.provenance["version"], config_hash=b.provenance["config_hash"],
            headline=b.headline, higher_is_better=b.higher_is_better))
    columns = ["method", "version", "config_hash", "headline", "higher_is_better", "phase", "cells", "models", "mean",
               "std", "ci_low", "ci_high"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def overview_grid(table):
    """The overview turned for reading: one row per method, one column per phase, "mean [ci] n=cells"; a
    zoo-scope method's group of units (e.g. the random splits) goes in the "all" column, named."""
    import pandas as pd

    table = table.assign(column=[p if p in PHASES else tables.ALL for p in table["phase"]])
    phases = [p for p in (*PHASES, tables.ALL) if (table["column"] == p).any()]
    rows = []
    for method, part in table.groupby("method", sort=True):
        first = part.iloc[0]
        better = "higher" if first["higher_is_better"] else "lower"
        row = {"method": method, "headline": f"{first['headline']} ({better} is better)"}
        for r in part.to_dict("records"):
            group = "" if r["phase"] == r["column"] else f" ({r['phase']})"
            row[r["column"]] = (f"{tables.number(r['mean'], 3)} [{tables.number(r['ci_low'], 3)}, "
                                f"{tables.number(r['ci_high'], 3)}] n={r['cells']}{group}")
        rows.append(row)
    return pd.DataFrame(rows, columns=["method", "headline", *phases]).fillna("")


def check_choices(format: str, which: str = "both") -> None:
    """A one-line error for an unknown output format or table choice."""
    if format not in tables.FORMATS:
        raise UsageError(f"unknown format '{format}'; valid: {', '.join(tables.FORMATS)}")
    if which not in TABLES:
        raise UsageError(f"unknown table '{which}'; valid: {', '.join(TABLES)}")


def render_board(b: Board, format: str, which: str = "both") -> str:
    """A board's tables as csv, markdown or json text: `which` is "phases", "cells" or "both"."""
    check_choices(format, which)
    if format == "rich":
        raise UsageError("format 'rich' is for terminals; valid for text: csv, markdown, json")
    named = {"phases": b.phases(), "cells": b.cells()}
    if format == "json":
        chosen = {k: v for k, v in named.items() if which in (k, "both")}
        return tables.to_json({"provenance": b.provenance, "ci": tables.CI_NOTE, **chosen})
    stems = {"phases": "summary", "cells": "units"} if b.scope == "zoo" else {"phases": "phases", "cells": "cells"}
    if format == "csv":
        if which != "both":
            return tables.to_csv(named[which])
        return (f"# phases ({tables.CI_NOTE})\n{tables.to_csv(named['phases'])}\n"
                f"# cells\n{tables.to_csv(named['cells'])}")
    return "\n".join(board_markdown(b, stems[k], named[k])
                     for k in ("phases", "cells") if which in (k, "both"))


def render_overview(boards: Sequence[Board], format: str) -> str:
    """The headline of every board per phase as csv, markdown (one row per method) or json text."""
    table = overview(boards)
    if format == "markdown":
        return f"Headline per phase: mean [{tables.CI_NOTE}] n=cells\n\n{tables.to_markdown(overview_grid(table))}"
    if format == "json":
        return tables.to_json({"ci": tables.CI_NOTE, "methods": {b.method: b.provenance for b in boards},
                               "headlines": table})
    return tables.render(table, format)


def phase_labels(side: Board) -> dict[str, str]:
    if "phase" not in side.table:
        return {}
    return {u: p for u, p in zip(side.table["unit"], side.table["phase"]) if isinstance(p, str)}


# ---- seed noise -------------------------------------------------------------------------------------


def seed_noise(spec: ZooSpec, store: Store | None = None, epoch: int | None = None):
    """Per cell: how many seeds, mean and standard deviation (ddof=1) of their test accuracy (eval annotation)."""
    import pandas as pd

    from zoobench.landscape.annotations import Annotations

    columns = ["unit", "seeds", "test_acc_mean", "test_acc_std"]
    models = Annotations((store or Store()).zoo(spec), "eval", epoch).models()
    if models.empty or "test_acc" not in models:
        return pd.DataFrame(columns=columns)
    grouped = models.groupby("cell_id", sort=True)["test_acc"]
    frame = pd.DataFrame({"unit": list(grouped.groups), "seeds": grouped.count().tolist(),
                          "test_acc_mean": grouped.mean().tolist(), "test_acc_std": grouped.std(ddof=1).tolist()})
    return grid_order(frame, spec)[columns]


def grid_order(frame, spec: ZooSpec):
    from zoobench.spec.grid import cells

    order = {c.id: i for i, c in enumerate(sorted(cells(spec), key=lambda c: (c.load, c.temperature)))}
    return frame.assign(_order=[order.get(u, len(order)) for u in frame["unit"]]).sort_values(
        ["_order", "unit"], kind="stable").drop(columns="_order").reset_index(drop=True)


def board_markdown(b: Board, stem: str, frame) -> str:
    """One of a board's tables as a Markdown file: a header that says what it is, then the table."""
    return f"{_header(b, stem)}\n{_markdown(b, stem, frame)}"


def _markdown(b: Board, stem: str, frame) -> str:
    """Per-unit tables as they are; summaries turned for reading (a row per number, a column per phase)."""
    if stem in ("phases", "summary"):
        frame = tables.phase_grid(frame, b.headline, unit="units" if b.scope == "zoo" else "cells")
    return tables.to_markdown(frame)


def _header(b: Board, stem: str) -> str:
    p = b.provenance
    direction = "higher is better" if b.higher_is_better else "lower is better"
    what = {"cells": "per cell (seed means)", "units": "per unit",
            "phases": f"per phase and over all cells: mean, std (over cells) of every number; headline {p['headline']} "
                      f"({direction}) with its {tables.CI_NOTE}",
            "summary": f"{_over_units(b)}: mean, std of every number; headline {p['headline']} ({direction}) with "
                       f"its {tables.CI_NOTE.replace('cells', 'units')}"}[stem]
    return f"# {p['method']} on {p['zoo']}: {what}\n\n{b.title}; epoch {p['epoch']}; {p['models']} models.\n"


def _over_units(b: Board) -> str:
    kinds = tables.unit_kinds(b.table["unit"]) if "unit" in b.table else [tables.ALL]
    return "over all units" if kinds == [tables.ALL] else f"per kind of unit ({', '.join(kinds)})"
