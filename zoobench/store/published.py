"""Published annotations: loss-landscape metrics a zoo's authors computed, kept apart from computed ones.

A zoo imported from published metrics (`zoobench.store.reference`) or from trial folders whose
``result.json`` lines carry annotation keys (`zoobench.store.ptmz`) gets, per annotated epoch, one
file ``published/e{epoch:06d}.json`` with the cells' values in zoobench's columns and units and the
provenance of every number (who computed it, with which estimator, from which source column). Readers
(`zoobench.landscape.annotations.cell_table`) show them as published and never merge them with
computed annotations of the same zoo.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from zoobench.store import atomic
from zoobench.store.zoo import ZooStore

# The published columns (PTMZ summary files and result.json keys), in zoobench's columns and units:
# name -> (column, converter, note). mc is published in percentage points of error; zoobench stores
# fractions. The Hessian values are natural logs; zoobench keeps the log and the value.
PTMZ_CKA = "biased linear CKA of the logits, 10 batches of 128 test images (PTMZ CKA.py)"
COLUMNS: dict[str, tuple[str, float]] = {
    "representation_similarity": ("cka", 1.0),
    "curve_mc_train_error": ("mc", 0.01),
    "curve_mc_test_error": ("mc_test", 0.01),
    "log_hessian_trace_train": ("hessian_log_trace", 1.0),
    "log_hessian_top_ev_val": ("hessian_log_top_eigenvalue", 1.0),
}
NOTES = {
    "cka": PTMZ_CKA,
    "mc": "Bezier-curve mode connectivity on the train error, published in points, stored as a fraction",
    "mc_test": "the same on the test error",
    "hessian_log_trace": "natural log of the Hessian trace on train data",
    "hessian_log_top_eigenvalue": "natural log of the top Hessian eigenvalue on validation data",
}


def annotation_values(raw: dict[str, Any]) -> dict[str, float]:
    """The published annotation keys of one row, in zoobench's columns and units (missing ones left out)."""
    found = {}
    for key, (name, scale) in COLUMNS.items():
        value = raw.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            found[name] = float(value) * scale
    if "hessian_log_trace" in found:
        found["hessian_trace"] = math.exp(found["hessian_log_trace"])
    if "hessian_log_top_eigenvalue" in found:
        found["hessian_top_eigenvalue"] = math.exp(found["hessian_log_top_eigenvalue"])
    return found


def path(zoo: ZooStore, epoch: int) -> Path:
    return zoo.path / "published" / f"e{epoch:06d}.json"


def write(zoo: ZooStore, epoch: int, cells: list[dict[str, Any]], provenance: dict[str, Any]) -> None:
    """Store one epoch's published cells: each {"cell_id", "models", "cell": {column: value}}."""
    atomic.write_json(path(zoo, epoch), {"epoch": epoch, "provenance": {**provenance, "columns": NOTES},
                                         "cells": cells})


def read(zoo: ZooStore, epoch: int) -> dict[str, Any] | None:
    """The published cells of one epoch with their provenance, or None when there are none."""
    try:
        return json.loads(path(zoo, epoch).read_text())
    except FileNotFoundError:
        return None


def mark_imported(zoo: ZooStore, source_sha256: str) -> None:
    """Record, last, that every model and published epoch of the source with this hash is stored."""
    atomic.write_json(zoo.path / "published" / "imported.json", {"source_sha256": source_sha256})


def imported(zoo: ZooStore) -> str | None:
    """The hash of the source whose import finished into this zoo, or None."""
    try:
        return json.loads((zoo.path / "published" / "imported.json").read_text())["source_sha256"]
    except (OSError, ValueError, KeyError):
        return None


def epochs(zoo: ZooStore) -> list[int]:
    """The epochs with published annotations."""
    return sorted(int(p.stem[1:]) for p in (zoo.path / "published").glob("e*.json"))


EVAL_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc")


def cells(rows: list[dict[str, Any]], cell_id: Callable[[dict[str, Any]], str]) -> tuple[list[dict], list[str]]:
    """One epoch's result rows (one per model) grouped into the cells `write` stores, and the ids of
    cells whose seeds disagree on the annotation (kept without it)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(cell_id(row), []).append(row)
    found, conflicts = [], []
    for cell, members in sorted(grouped.items()):
        values, problem = cell_values(members)
        if problem is not None:
            conflicts.append(cell)
        found.append({"cell_id": cell, "models": len(members), "cell": values})
    return found, conflicts


def cell_values(rows: list[dict[str, Any]]) -> tuple[dict[str, float], str | None]:
    """A cell's published values from its seeds' result rows at one epoch: the seed means of the
    performance columns (and the gap), and the cell's annotation values, which the authors copied to
    every seed's row. Returns (values, problem): a problem when the seeds' rows disagree on them
    (then no annotation is kept for the cell)."""
    values: dict[str, float] = {}
    for key in EVAL_KEYS:
        found = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if found:
            values[key] = sum(found) / len(found)
    if "train_acc" in values and "test_acc" in values:
        values["gap"] = values["train_acc"] - values["test_acc"]
    annotated = [annotation_values(r) for r in rows]
    annotated = [a for a in annotated if a]
    if not annotated:
        return values, None
    first = annotated[0]
    for other in annotated[1:]:
        if other.keys() != first.keys() or any(not math.isclose(other[k], first[k], rel_tol=1e-6, abs_tol=1e-9)
                                              for k in first):
            return values, "its seeds' rows carry different annotation values"  # performance only
    return {**values, **first}, None
