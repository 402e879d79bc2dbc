"""`zoobench zoo export --format wsl|unterthiner`: a zoo as the flat weight matrices that weight-space
learning reads.

Both formats write one folder per shape group (models of different widths cannot share a matrix)
with ``weights.npy`` (float32, rows = model x epoch, saved without pickle so it memory-maps), a
layout saying which columns are which tensor, and a metrics table with one row per weight row; the
export's top level has ``index.csv`` (the groups and where their rows start in the export's global
row numbering), ``splits.json`` (the named splits of `zoobench.data.splits` over global rows) and a
README. The formats differ in what a row holds and how it is named: see `zoobench.wsl.formats`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from zoobench.errors import UsageError
from zoobench.store import ZooStore, atomic
from zoobench.wsl import folders
from zoobench.wsl.formats import FORMATS, Column
from zoobench.wsl.rows import ShapeGroup, ZooRows, zoo_rows

EXPORT_FILE = "export.json"
INDEX = "index.csv"
SPLITS = "splits.json"


@dataclass
class ExportReport:
    path: Path
    format: str
    rows: int = 0
    groups: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # groups whose weights were written (the others were current)
    left_out: dict[str, str] = field(default_factory=dict)  # model id -> why it has no rows


def export_weights(zoo: ZooStore, path: str | Path, format: str = "wsl", epochs: Sequence[int] | None = None,
                   show_progress: bool = True) -> ExportReport:
    """Write the zoo's weights at `epochs` (default: the metric epoch) in `format` under `path`.

    Resumable: a group folder whose checkpoints have not changed keeps its weight matrix, and every
    folder is swapped in whole, so Ctrl-C leaves the previous export or the new one, never a mix."""
    if format not in FORMATS:
        raise UsageError(f"unknown export format '{format}'; valid: ptmz, {', '.join(FORMATS)}")
    fmt = FORMATS[format]
    root = Path(path)
    _check_target(root, zoo, format)
    rows = zoo_rows(zoo, epochs)
    epochs = sorted(set(rows.table["epoch"]))
    layouts = {group.name: fmt.columns(_first_state(zoo, rows, group), zoo.spec.name) for group in rows.groups}
    identity = {"zoo": zoo.spec.name, "fingerprint": zoo.spec.fingerprint, "format": format,
                "architecture": zoo.spec.model.architecture}
    # claims the folder (an interrupted export resumes here) and says that, until the index is written
    # again, its groups and index may not belong together
    atomic.writable_folder(root, "the export")
    folders.write_index(root, {EXPORT_FILE: _json({**identity, "complete": False})})
    folders.clear_leftovers(root)
    report = ExportReport(root, format, len(rows.table), [g.name for g in rows.groups], left_out=rows.left_out)
    hashes = {e: {m: h for cell in zoo.checkpoint_hashes(e).values() for m, h in cell.items()} for e in epochs}
    starts = np.cumsum([0, *(len(g.rows) for g in rows.groups)])
    for group, start in zip(rows.groups, starts):
        table = rows.table.iloc[group.rows]
        manifest = {"format": format, "fingerprint": zoo.spec.fingerprint,
                    "rows": [[m, int(e), hashes[e][m]] for m, e in zip(table["model_id"], table["epoch"])]}
        files = fmt.group_files(table, layouts[group.name], local_splits(rows, group), zoo.spec)
        if folders.write_group(root, group.name, manifest, lambda p, g=group: _write_matrix(
                zoo, rows, g, layouts[g.name], p, show_progress), files):
            report.written.append(group.name)
    _remove_stale_groups(root, {g.name for g in rows.groups})
    folders.write_index(root, {
        INDEX: _index_csv(rows, starts, layouts),
        SPLITS: json.dumps({name: split.to_json() for name, split in _global_splits(rows).items()}) + "\n",
        "README.md": fmt.readme(zoo.spec, rows, epochs),
        EXPORT_FILE: _json({**identity, "complete": True, "epochs": epochs, "rows": len(rows.table),
                            "groups": report.groups, "left_out": rows.left_out}),
    })
    return report


def _json(content: dict) -> str:
    return json.dumps(content, indent=1, sort_keys=True) + "\n"


def _check_target(root: Path, zoo: ZooStore, format: str) -> None:
    """Refuse to write into a folder that holds something other than an export of this zoo in this format."""
    if not root.exists():
        return
    if not root.is_dir():
        raise UsageError(f"{root} is a file; give a folder to export into")
    meta = root / EXPORT_FILE
    if meta.is_file():
        try:
            found = json.loads(meta.read_text())
            same = (found["fingerprint"], found["format"]) == (zoo.spec.fingerprint, format)
        except (ValueError, KeyError, TypeError):
            same = False
        if same:
            return
        raise UsageError(f"{root} holds another export ({meta}: not {zoo.spec.name} {zoo.spec.fingerprint} in "
                         f"format {format}); choose another folder or delete it")
    if any(p for p in root.iterdir() if not p.name.startswith((".tmp-", ".trash-"))):
        raise UsageError(f"{root} is not empty and holds no zoobench export; choose an empty or new folder")


def _first_state(zoo: ZooStore, rows: ZooRows, group: ShapeGroup) -> dict:
    """The group's first row's state dict, in module order: the layout's names, shapes and dtypes."""
    first = rows.table.iloc[group.rows[0]]
    state = zoo.load_state(first["model_id"], int(first["epoch"]))
    return {key: state[key] for key in group.shapes}


def _write_matrix(zoo: ZooStore, rows: ZooRows, group: ShapeGroup, columns: list[Column], path: Path,
                  show_progress: bool) -> None:
    """Fill the group's float32 matrix row by row from the checkpoints (memory: one row at a time)."""
    from rich.progress import track

    table = rows.table.iloc[group.rows]
    width = sum(c.numel for c in columns)
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(table), width))
    pairs = list(zip(table["model_id"], table["epoch"]))
    for i, (model_id, epoch) in enumerate(track(pairs, description=f"exporting {group.name}",
                                                disable=not show_progress)):
        state = zoo.load_state(model_id, int(epoch))
        matrix[i] = np.concatenate([c.values(state) for c in columns])
    matrix.flush()
    del matrix


def local_splits(rows: ZooRows, group: ShapeGroup) -> dict[str, dict]:
    """The zoo's splits restricted to one group, in the group's row numbering."""
    local = {position: i for i, position in enumerate(group.rows)}
    return {name: {"description": split.description,
                   **{part: [local[p] for p in getattr(split, part).tolist() if p in local]
                      for part in ("train", "val", "test")}}
            for name, split in rows.splits.items()}


def _global_splits(rows: ZooRows):
    """The zoo's splits in the export's global numbering (groups one after the other)."""
    from dataclasses import replace

    order = [p for g in rows.groups for p in g.rows]
    position = {p: i for i, p in enumerate(order)}
    remap = lambda indices: np.array(sorted(position[p] for p in indices.tolist()), dtype=int)  # noqa: E731
    return {name: replace(s, train=remap(s.train), val=remap(s.val), test=remap(s.test))
            for name, s in rows.splits.items()}


def _index_csv(rows: ZooRows, starts: np.ndarray, layouts: dict[str, list[Column]]) -> str:
    import pandas as pd

    frame = pd.DataFrame([{"group": g.name, "folder": g.name, "first_row": int(start), "rows": len(g.rows),
                           "models": rows.table.iloc[g.rows]["model_id"].nunique(),
                           "loads": " ".join(map(str, dict.fromkeys(rows.table.iloc[g.rows]["load"]))),
                           "columns": sum(c.numel for c in layouts[g.name])}
                          for g, start in zip(rows.groups, starts)])
    return frame.to_csv(index=False)


def _remove_stale_groups(root: Path, current: set[str]) -> None:
    """Group folders of an earlier export that this one no longer has (e.g. fewer epochs, other widths)."""
    for folder in root.iterdir():
        if folder.is_dir() and not folder.name.startswith(".") and folder.name not in current \
                and (folder / folders.MANIFEST).is_file():
            folders.remove(folder)
