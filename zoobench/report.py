"""Phase-resolved summaries of method results; the figures live in `zoobench.figures`.

Every report states the zoo, the spec fingerprint, the method config, and how many models are
behind each number. `heatmap`, `heatmap_row`, `zoo_sheet` and `is_signed` are re-exported here.
"""

from __future__ import annotations

import math
from typing import Sequence

from zoobench.figures import heatmap, heatmap_row, is_signed, zoo_sheet
from zoobench.phases import PHASES

__all__ = ["heatmap", "heatmap_row", "is_signed", "phase_summary", "zoo_sheet"]


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
