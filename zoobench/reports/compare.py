"""Comparing two methods on one zoo, cell by cell, against the seed noise of each cell.

Comparing two boards (`compare`) puts both on a shared metric, draws them side by side with shared
colour limits next to the difference (first - second), and counts per phase the cells where the
first is better beyond seed noise (wins), within it (ties) or worse (losses). Seed noise of a cell
is the standard deviation (ddof=1) of its seeds' test accuracies in the eval annotation: a method
returns only seed means, so this is the scale on which two seed-mean results are told apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zoobench.errors import UsageError
from zoobench.landscape.phases import PHASES
from zoobench.landscape.registry import column
from zoobench.reports import tables
from zoobench.reports.boards import NOISE, Board, board, grid_order, phase_labels, seed_noise
from zoobench.spec import ZooSpec
from zoobench.store import Store, atomic

LOWER_IS_BETTER = ("loss", "barrier", "error")  # name fragments of metrics that are no method's headline


def shared_metric(first: Board, second: Board, metric: str | None = None) -> str:
    """The metric two boards are compared on: `metric` if both report it; else the common headline, the
    first's headline if the second reports it, the second's if the first reports it; else a UsageError."""
    a, b = set(first.metrics()), set(second.metrics())
    common = sorted(a & b)
    listed = ", ".join(common) or "none"
    if metric is not None:
        if metric in common:
            return metric
        raise UsageError(f"--metric {metric} is not reported by both {first.label} and {second.label}; "
                         f"both report: {listed}")
    if first.headline == second.headline and first.headline in common:
        return first.headline
    if first.headline in b:
        return first.headline
    if second.headline in a:
        return second.headline
    raise UsageError(f"{first.label} (headline {first.headline}) and {second.label} (headline {second.headline}) "
                     f"share no headline metric; pick one with --metric; both report: {listed}")


def direction(metric: str, first: Board, second: Board) -> bool:
    """Whether higher is better for `metric`: a headline's declared direction, a loss-landscape column's
    as the metric catalogue declares it, else by its name."""
    for b in (first, second):
        if b.headline == metric:
            return b.higher_is_better
    declared = column(metric)
    if declared is not None and declared.higher_is_better is not None:
        return declared.higher_is_better
    return not any(part in metric for part in LOWER_IS_BETTER)


def outcomes(first, second, noise: dict[str, float], higher_is_better: bool = True):
    """Per cell: both values, the difference (first - second), the noise and the outcome for the first:
    "win" (better by more than the noise), "tie" (|difference| <= noise), "loss", or "missing".

    `first` and `second` map unit -> value; a cell without a noise estimate (one seed, or no eval
    annotation) has noise 0, so only equal values tie there."""
    import pandas as pd

    rows = []
    for unit in sorted(set(first) | set(second)):
        a, b = first.get(unit), second.get(unit)
        scale = noise.get(unit)
        scale = 0.0 if scale is None or not math.isfinite(scale) else float(scale)
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            rows.append({"unit": unit, "first": a, "second": b, "difference": math.nan, "noise": scale,
                         "outcome": "missing"})
            continue
        difference = a - b
        if abs(difference) <= scale:
            outcome = "tie"
        else:
            outcome = "win" if (difference > 0) == higher_is_better else "loss"
        rows.append({"unit": unit, "first": a, "second": b, "difference": difference, "noise": scale,
                     "outcome": outcome})
    return pd.DataFrame(rows, columns=["unit", "first", "second", "difference", "noise", "outcome"])


def win_table(cells):
    """Per phase (then all): cells compared, wins, ties, losses (for the first), missing, mean difference."""
    import pandas as pd

    groups = [(p, cells[cells["phase"] == p]) for p in PHASES if (cells["phase"] == p).any()]
    rows = []
    for phase, part in [*groups, (tables.ALL, cells)]:
        counts = part["outcome"].value_counts()
        compared = part[part["outcome"] != "missing"]
        rows.append({"phase": phase, "cells": len(compared), "wins": int(counts.get("win", 0)),
                     "ties": int(counts.get("tie", 0)), "losses": int(counts.get("loss", 0)),
                     "missing": int(counts.get("missing", 0)),
                     "mean_difference": float(compared["difference"].mean()) if len(compared) else math.nan})
    return pd.DataFrame(rows, columns=["phase", "cells", "wins", "ties", "losses", "missing", "mean_difference"])


@dataclass
class Comparison:
    first: Board
    second: Board
    metric: str
    higher_is_better: bool
    cells: Any  # pandas: unit, load, temperature, phase, first, second, difference, noise, outcome
    phases: Any  # pandas: phase, cells, wins, ties, losses, missing, mean_difference
    noise_source: str
    files: dict[str, Path] = field(default_factory=dict)  # figure, phases_csv, phases_md, cells_csv


def compare(first: Any, second: Any, spec: ZooSpec, store: Store | None = None, metric: str | None = None,
            out: str | Path | None = None, plugins: Sequence[str] = (), epoch: int | None = None) -> Comparison:
    """Compare two methods on the zoo: each side a method name (stored results, default config), a published
    leaderboard folder, or a Board. Writes the figure (side by side with shared limits, and the difference
    with ties marked) and the per-phase win table (CSV, Markdown) into `out` (default: the zoo's
    `comparisons/` folder in the store)."""
    store = store or Store()
    a, b = board(first, spec, store, plugins, epoch), board(second, spec, store, plugins, epoch)
    for side in (a, b):
        if side.scope != "cell":
            raise UsageError(f"{side.label} has scope '{side.scope}' (its units are not cells); compare works on "
                             f"per-cell methods")
        if side.provenance["fingerprint"] != spec.fingerprint:
            raise UsageError(f"{side.label} holds results on {side.provenance['zoo']} "
                             f"({side.provenance['fingerprint']}), not on {spec.name} ({spec.fingerprint})")
    name = shared_metric(a, b, metric)
    higher = direction(name, a, b)
    noise, noise_source = _noise(spec, store, epoch, (a, b))
    values = [_values(side, name) for side in (a, b)]
    cells = outcomes(values[0], values[1], noise, higher)
    phase = {**phase_labels(b), **{u: p for u, p in phase_labels(a).items() if p != "?"}}
    place = {r["unit"]: r for r in a.table.to_dict("records")}
    place.update({r["unit"]: r for r in b.table.to_dict("records") if r["unit"] not in place})
    cells.insert(1, "load", [place[u].get("load") for u in cells["unit"]])
    cells.insert(2, "temperature", [place[u].get("temperature") for u in cells["unit"]])
    cells.insert(3, "phase", [phase.get(u, "?") for u in cells["unit"]])
    cells = grid_order(cells, spec)
    result = Comparison(a, b, name, higher, cells, win_table(cells), noise_source)
    folder = Path(out) if out is not None else store.zoo(spec).path / "comparisons"
    stem = f"{_slug(a.label)}-vs-{_slug(b.label)}-{_slug(name)}"
    result.files = {"figure": folder / f"{stem}.png", "phases_csv": folder / f"{stem}-phases.csv",
                    "phases_md": folder / f"{stem}-phases.md", "cells_csv": folder / f"{stem}-cells.csv"}
    atomic.write_text(result.files["phases_csv"], tables.to_csv(result.phases))
    atomic.write_text(result.files["cells_csv"], tables.to_csv(cells))
    atomic.write_text(result.files["phases_md"], f"{_compare_header(result)}\n{tables.to_markdown(result.phases)}")
    _figure(result, spec, result.files["figure"])
    return result


def _values(side: Board, metric: str) -> dict[str, float]:
    ok = side.table[side.table["status"] == "ok"]
    return {u: float(v) for u, v in zip(ok["unit"], ok[metric]) if v is not None and math.isfinite(v)}




def _noise(spec: ZooSpec, store: Store, epoch: int | None, sides: Sequence[Board]) -> tuple[dict[str, float], str]:
    """Each cell's seed noise: from the store's eval annotation, else from a published side's seed_noise.csv."""
    import pandas as pd

    frame = seed_noise(spec, store, epoch)
    source = "std of the seeds' test accuracy (eval annotation in the store)"
    if frame.empty:
        for side in sides:
            path = Path(side.source).parent / NOISE
            if side.published and path.exists():
                frame = pd.read_csv(path)
                source = f"std of the seeds' test accuracy ({path})"
                break
    if frame.empty:
        return {}, "none known (no eval annotation): only equal values tie"
    return dict(zip(frame["unit"], frame["test_acc_std"])), source


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-")


def _compare_header(c: Comparison) -> str:
    better = "higher" if c.higher_is_better else "lower"
    return (f"# {c.first.label} vs {c.second.label} on {c.metric} ({better} is better)\n\n"
            f"- first: {c.first.title}\n- second: {c.second.title}\n"
            f"- per cell, the first wins when it is better by more than the cell's seed noise, ties within it; "
            f"seed noise: {c.noise_source}\n")


def _figure(c: Comparison, spec: ZooSpec, path: Path) -> Path:
    """Both boards side by side with shared colour limits, and the difference with the ties marked."""
    from zoobench.reports.figures import heatmap_row

    phases = dict(zip(c.cells["unit"], c.cells["phase"]))
    delta = f"{c.metric} difference"
    diff = c.cells.assign(**{delta: c.cells["difference"]})[["unit", delta]].assign(
        n_models=[_models(c, u) for u in c.cells["unit"]])
    finite = diff[delta].dropna().abs()
    bound = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    ties = set(c.cells.loc[c.cells["outcome"] == "tie", "unit"])
    panels = [{"table": side.table, "metric": c.metric, "phases": phases,
               "subtitle": f"{side.label}: {c.metric}\nv{side.provenance['version']}, config "
                           f"{side.provenance['config_hash']}"} for side in (c.first, c.second)]
    panels.append({"table": diff, "metric": delta, "limits": (-bound, bound), "signed": True, "ties": ties,
                   "phases": phases,
                   "subtitle": f"difference: {c.first.label} - {c.second.label}"})
    better = "higher" if c.higher_is_better else "lower"
    title = (f"{spec.name} ({spec.fingerprint}): {c.first.label} vs {c.second.label} on {c.metric} "
             f"({better} is better)")
    return heatmap_row(panels, spec, path, title, shared_limits=True)


def _models(c: Comparison, unit: str) -> int:
    counts = [int(t.loc[t["unit"] == unit, "n_models"].iloc[0]) for t in (c.first.table, c.second.table)
              if (t["unit"] == unit).any()]
    return min(counts) if counts else 0
