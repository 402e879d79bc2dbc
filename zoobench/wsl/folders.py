"""Writing an export's shape-group folders so that an interrupted or repeated export never leaves a
folder that reads as valid but is not.

Each group folder is built under a temporary name and swapped in whole. Its weight matrix is the
expensive part: when the folder already holds one made from the same checkpoints (its manifest
lists every row's checkpoint hash), the new folder takes it over with a hard link instead of reading
every checkpoint again, so a re-run after new annotations, or after Ctrl-C, only writes what changed.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from zoobench.store import atomic

MANIFEST = "manifest.json"
WEIGHTS = "weights.npy"


def clear_leftovers(root: Path) -> None:
    """Remove what an interrupted export left: half-built and half-replaced group folders."""
    for leftover in [*root.glob(".tmp-*"), *root.glob(".trash-*")]:
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def write_group(root: Path, name: str, manifest: dict, write_weights: Callable[[Path], None],
                files: dict[str, str | bytes]) -> bool:
    """Build folder `root/name` with its weight matrix (written by `write_weights(path)` unless the current
    folder's manifest equals `manifest`) and `files`; returns whether the weights were written anew."""
    target = root / name
    staging = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        reuse = _manifest(target) == manifest
        if reuse:
            os.link(target / WEIGHTS, staging / WEIGHTS)
        else:
            write_weights(staging / WEIGHTS)
        for file, content in {**files, MANIFEST: json.dumps(manifest, indent=1, sort_keys=True) + "\n"}.items():
            (staging / file).write_bytes(content.encode() if isinstance(content, str) else content)
        _fsync_folder(staging)
        swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return not reuse


def swap(new: Path, target: Path) -> None:
    """Put folder `new` in place of `target` (which may not exist); the old one is removed afterwards."""
    if target.exists():
        remove(target)
    os.rename(new, target)


def remove(folder: Path) -> None:
    """Remove a group folder: renamed away first, so no reader ever sees it half deleted."""
    trash = folder.parent / f".trash-{folder.name}-{uuid.uuid4().hex[:8]}"
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def write_index(root: Path, files: dict[str, str]) -> None:
    """The export's top-level files, each atomically."""
    for file, content in files.items():
        atomic.write_text(root / file, content)


def _manifest(folder: Path) -> dict | None:
    try:
        found = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return found if (folder / WEIGHTS).is_file() else None


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
