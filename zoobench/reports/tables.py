"""Result tables of one method on one zoo: per cell, and per phase with a bootstrap interval.

A method returns one dict per cell (the mean over the cell's seeds), so the spread inside a phase
is the spread over its cells, and the headline's confidence interval is a bootstrap over the
phase's cells (seeded: the same results give the same interval, to the last digit). Zoo-scope
methods (e.g. probe, whose units are data splits) have no phases: their summary groups the units by
kind (`unit_kind`: random0..4 are "random"), since a random split and a split across phases answer
different questions and their mean would answer none; a method whose units are all of one kind keeps
one group, "all".

Every table is a pandas DataFrame; `render` writes it as CSV, Markdown (pipe tables, no extra
dependency) or JSON, with numbers rounded to 6 significant digits so that files regenerated from
the same store are byte-for-byte identical.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable, Sequence

from zoobench.errors import UsageError
from zoobench.landscape.phases import PHASES

RESULT_COLUMNS = ("zoo", "fingerprint", "method", "version", "config_hash", "unit", "load", "temperature", "status",
                  "n_models", "error", "phase")
PLACE_COLUMNS = ("unit", "load", "temperature", "phase", "status", "n_models")
ALL = "all"  # the summary row over every unit
FIRST_KIND = "random"  # of a zoo-scope method's kinds of unit, the one shown first (and in overviews)
RESAMPLES = 1000
LEVEL = 0.95
CI_NOTE = f"{LEVEL:.0%} CI, bootstrap over cells ({RESAMPLES} resamples, seed 0)"
DIGITS = 6  # significant digits in written files
FORMATS = ("rich", "csv", "markdown", "json")


def metrics(table, headline: str | None = None) -> list[str]:
    """The numeric columns a method reported, headline first, the others in alphabetical order."""
    found = sorted(c for c in table.columns if c not in RESULT_COLUMNS and table[c].dtype.kind in "fi")
    if headline in found:
        found.remove(headline)
        found.insert(0, headline)
    return found


def bootstrap_ci(values: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (seeded; NaNs dropped; (nan, nan) when empty)."""
    import numpy as np

    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if data.size == 0:
        return math.nan, math.nan
    if data.size == 1:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def cell_table(table, headline: str | None = None):
    """One row per unit (cell, or split of a zoo-scope method), in grid order: where it is, its phase,
    status and model count, then every reported number (headline first)."""
    import pandas as pd

    if table.empty:
        return pd.DataFrame(columns=list(PLACE_COLUMNS))
    place = [c for c in PLACE_COLUMNS if c in table]
    frame = table[place + metrics(table, headline)].copy()
    if "load" in frame and frame["load"].notna().any():
        frame = frame.sort_values(["load", "temperature", "unit"], kind="stable")
    else:
        frame = frame.sort_values("unit", kind="stable")
        frame = frame.drop(columns=[c for c in ("load", "temperature") if c in frame])
    frame["n_models"] = frame["n_models"].astype(int)
    return frame.reset_index(drop=True)


def unit_kind(unit: str) -> str:
    """What a zoo-scope unit is an instance of: its name without trailing digits ("random3" -> "random")."""
    return re.sub(r"\d+$", "", unit) or unit


def unit_kinds(units: Iterable[str]) -> list[str]:
    """The kinds of a zoo-scope method's units, "random" first, then alphabetical; [ALL] for a single kind."""
    kinds = sorted({unit_kind(str(u)) for u in units}, key=lambda kind: (kind != FIRST_KIND, kind))
    return kinds if len(kinds) > 1 else [ALL]


def phase_table(table, headline: str, scope: str = "cell", resamples: int = RESAMPLES, seed: int = 0):
    """Per phase (then over all cells): how many cells and models, and for every reported number its mean
    and standard deviation over the cells (ddof=0); the headline also gets a bootstrap CI over the cells.

    Tidy: one row per (phase, metric), columns phase, cells, models, metric, mean, std, ci_low, ci_high.
    Failed units are left out. For a zoo-scope method the groups are the kinds of its units (`unit_kinds`:
    one group "all" when they are of one kind), and `models` is the most models any unit of the group
    used (each unit sees the whole zoo)."""
    import pandas as pd

    columns = ["phase", "cells", "models", "metric", "mean", "std", "ci_low", "ci_high"]
    ok = table[table["status"] == "ok"] if "status" in table else table
    if ok.empty:
        return pd.DataFrame(columns=columns)
    names = metrics(ok, headline)
    groups: list[tuple[str, Any]] = []
    if scope == "zoo":  # the kinds of every unit, so that a failed kind does not turn the others into "all"
        kinds = ok["unit"].astype(str).map(unit_kind)
        groups += [(kind, ok if kind == ALL else ok[kinds == kind]) for kind in unit_kinds(table["unit"])
                   if kind == ALL or (kinds == kind).any()]
    else:
        if "phase" in ok:
            groups += [(phase, ok[ok["phase"] == phase]) for phase in PHASES if (ok["phase"] == phase).any()]
        groups.append((ALL, ok))
    rows = []
    for phase, part in groups:
        models = int(part["n_models"].max() if scope == "zoo" else part["n_models"].sum())
        for metric in names:
            values = part[metric].dropna()
            low, high = bootstrap_ci(values.tolist(), resamples, seed=seed) if metric == headline else (math.nan,) * 2
            rows.append({"phase": phase, "cells": len(part), "models": models, "metric": metric,
                         "mean": float(values.mean()) if len(values) else math.nan,
                         "std": float(values.std(ddof=0)) if len(values) else math.nan,
                         "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=columns)


def headline_rows(phases, headline: str):
    """The headline's rows of a phase table (one per phase, then "all"; a zoo-scope one's per kind of unit)."""
    return phases[phases["metric"] == headline].reset_index(drop=True)


# ---- rendering --------------------------------------------------------------------------------------


def number(value: Any, digits: int = 4) -> str:
    """A number for people: `digits` significant digits, "-" for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def _rounded(value: Any) -> Any:
    """JSON/CSV value: floats to DIGITS significant digits, NaN to None, numpy scalars to Python."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.{DIGITS}g}")
    return value


def records(frame) -> list[dict[str, Any]]:
    """Rows as plain, rounded values (NaN -> None), columns in table order."""
    return [{column: _rounded(value) for column, value in zip(frame.columns, row)}
            for row in frame.itertuples(index=False, name=None)]


def to_csv(frame) -> str:
    """CSV with numbers at DIGITS significant digits and empty fields for missing values ("\\n" line ends)."""
    return frame.to_csv(index=False, float_format=f"%.{DIGITS}g", lineterminator="\n")


def to_markdown(frame, digits: int = 4) -> str:
    """A GitHub pipe table (numbers right-aligned, "-" for missing, pipes in text escaped)."""
    def text(value: Any) -> str:
        if isinstance(value, str):
            return value.replace("|", "\\|")
        if hasattr(value, "item"):
            value = value.item()
        return number(value, digits) if isinstance(value, float) else "-" if value is None else str(value)

    numeric = [frame[c].dtype.kind in "fiu" for c in frame.columns]
    lines = ["| " + " | ".join(str(c).replace("|", "\\|") for c in frame.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(text(v) for v in row) + " |" for row in frame.itertuples(index=False, name=None)]
    return "\n".join(lines) + "\n"


def to_json(value: Any) -> str:
    """Sorted-key, indented JSON of plain values (DataFrames become lists of rounded records)."""
    return json.dumps(_plain(value), sort_keys=True, indent=2, allow_nan=False) + "\n"


def _plain(value: Any) -> Any:
    if hasattr(value, "itertuples"):
        return records(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return _rounded(value)


def render(frame, format: str) -> str:
    """One table as csv, markdown or json text."""
    if format == "csv":
        return to_csv(frame)
    if format == "markdown":
        return to_markdown(frame)
    if format == "json":
        return to_json(frame)
    raise UsageError(f"unknown format '{format}'; valid: {', '.join(FORMATS)}")


def phase_grid(phases, headline: str, names: Iterable[str] | None = None, unit: str = "cells"):
    """The phase table turned for reading: one row per metric, one column per phase ("mean ± std"), with
    the headline's CI (`CI_NOTE`) as an extra row. Column headers carry the cell (unit) and model counts."""
    import pandas as pd

    if phases.empty:
        return pd.DataFrame(columns=["metric"])
    groups = list(dict.fromkeys(phases["phase"]))
    counts = phases.drop_duplicates("phase").set_index("phase")
    header = {g: f"{g} ({counts.loc[g, 'cells']} {unit.removesuffix('s') if counts.loc[g, 'cells'] == 1 else unit}, "
                 f"{counts.loc[g, 'models']} models)" for g in groups}
    rows = []
    for metric in names or list(dict.fromkeys(phases["metric"])):
        part = phases[phases["metric"] == metric].set_index("phase")
        rows.append({"metric": metric, **{header[g]: f"{number(part.loc[g, 'mean'])} ± {number(part.loc[g, 'std'])}"
                                          for g in groups if g in part.index}})
        if metric == headline:
            rows.append({"metric": f"{metric} {LEVEL:.0%} CI",
                         **{header[g]: f"[{number(part.loc[g, 'ci_low'])}, {number(part.loc[g, 'ci_high'])}]"
                            for g in groups if g in part.index}})
    return pd.DataFrame(rows, columns=["metric", *header.values()])
