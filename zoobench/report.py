"""Phase-resolved summaries and heatmaps of method results.

Heatmaps follow the field's convention: x = load (width), y = temperature with the hottest (small
batch, large lr) row at the top, one seed-mean value per cell; a sequential colormap for values
such as accuracy, a diverging one centred at 0 for signed values (gains, deltas, mc). Every figure
says which zoo, fingerprint, method, version and config it shows and how many models each cell has.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Sequence

from zoobench import atomic
from zoobench.phases import PHASES
from zoobench.spec import ZooSpec


def phase_summary(table, metrics: Sequence[str]):
    """Per phase: how many cells (and models) and the mean and standard deviation of each metric (pandas)."""
    import pandas as pd

    rows = []
    ok = table[table["status"] == "ok"] if "status" in table else table
    for phase in PHASES:
        part = ok[ok["phase"] == phase] if "phase" in ok else ok.iloc[0:0]
        if part.empty:
            continue
        row = {"phase": phase, "cells": len(part), "models": int(part["n_models"].sum())}
        for metric in metrics:
            values = part[metric].dropna() if metric in part else []
            row[f"{metric} mean"] = values.mean() if len(values) else math.nan
            row[f"{metric} std"] = values.std(ddof=0) if len(values) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def is_signed(metric: str, values: Sequence[float]) -> bool:
    """Signed quantities get a diverging colormap centred at 0: gains, deltas, mc, or mixed signs."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    named = any(part in metric for part in ("gain", "delta", "mc", "barrier"))
    return named or (bool(finite) and min(finite) < 0 < max(finite))


def heatmap(table, spec: ZooSpec, metric: str, path: Path, title: str,
            limits: tuple[float, float] | None = None) -> Path:
    """Write a load x temperature heatmap of `metric` (PNG or SVG by suffix), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from zoobench.grid import cell, hot_first

    loads, temperatures = list(spec.grid.load.values), hot_first(spec.grid.temperature)
    by_cell = dict(zip(table["unit"], table[metric])) if metric in table else {}
    models = dict(zip(table["unit"], table["n_models"])) if "n_models" in table else {}
    grid = np.full((len(temperatures), len(loads)), np.nan)
    counts = set()
    for i, temperature in enumerate(temperatures):
        for j, load in enumerate(loads):
            cell_id = cell(spec, load, temperature).id
            value = by_cell.get(cell_id)
            if value is not None and math.isfinite(value):
                grid[i, j] = value
                counts.add(int(models.get(cell_id, 0)))
    signed = is_signed(metric, grid[np.isfinite(grid)].tolist())
    if limits is None and np.isfinite(grid).any():
        low, high = float(np.nanmin(grid)), float(np.nanmax(grid))
        bound = max(abs(low), abs(high)) or 1.0
        limits = (-bound, bound) if signed else (low, high)
    figure, axes = plt.subplots(figsize=(1.0 + 0.75 * len(loads), 1.2 + 0.55 * len(temperatures)))
    cmap = plt.get_cmap("RdBu" if signed else "viridis").with_extremes(bad="0.85")
    image = axes.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=limits and limits[0],
                        vmax=limits and limits[1], aspect="auto")
    for i in range(len(temperatures)):
        for j in range(len(loads)):
            text = "-" if math.isnan(grid[i, j]) else f"{grid[i, j]:.2g}"
            red, green, blue, _ = image.cmap(image.norm(grid[i, j])) if text != "-" else (1, 1, 1, 1)
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # readable on every colour
            axes.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    axes.set_xticks(range(len(loads)), [f"{v:g}" for v in loads])
    axes.set_yticks(range(len(temperatures)), [f"{v:g}" for v in temperatures])
    axes.set_xlabel(f"load: {spec.grid.load.field}")
    axes.set_ylabel(f"temperature: {spec.grid.temperature.field} (hot at the top)")
    per_cell = "/".join(map(str, sorted(counts))) or "0"
    wrapped = textwrap.fill(title, width=int(11 * figure.get_figwidth()))
    axes.set_title(f"{wrapped}\n{metric}; {per_cell} models per cell", fontsize=8)
    figure.colorbar(image, ax=axes, label=metric)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(figure)
    atomic.write_bytes(Path(path), buffer.getvalue())
    return Path(path)
