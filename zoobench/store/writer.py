"""Writing models into the store: built in a staging folder, published in one rename, marker last.

A model is trained in ``<zoo>/.staging/`` and renamed into ``models/`` only once its completion
marker (file sizes and SHA-256 hashes) is written, so a model folder either is complete or does not
exist. `install` does the same for files a remote unit wrote elsewhere (see `zoobench.execution`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal, Mapping

from zoobench import __version__
from zoobench.spec import ZooSpec
from zoobench.spec.grid import ModelKey
from zoobench.store import atomic
from zoobench.store.zoo import MARKER, WEIGHTS, ZooStore, checkpoint_name, sha256


def model_params(spec: ZooSpec, key: ModelKey, recipe: dict[str, Any]) -> dict[str, Any]:
    """params.json: everything needed to rebuild this model and retrain it exactly."""
    import torch

    return {
        "zoo": spec.name, "fingerprint": spec.fingerprint, "model_id": key.id, "cell_id": key.cell.id,
        "seed": key.seed,
        "load": {"field": spec.grid.load.field, "value": key.cell.load},
        "temperature": {"field": spec.grid.temperature.field, "value": key.cell.temperature},
        "recipe": recipe,
        "versions": {"zoobench": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }


class ModelWriter:
    """Builds one model's folder in staging; `publish` makes it visible in one rename."""

    def __init__(self, zoo: ZooStore, model_id: str, params: dict[str, Any]) -> None:
        self.zoo = zoo
        self.model_id = model_id
        self.folder = atomic.redirect(_staging_folder(zoo.path, model_id))
        self.folder.mkdir(parents=True)
        (self.folder / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
        self._results = open(self.folder / "result.json", "w")
        self.epochs: list[int] = []

    def log_epoch(self, row: dict[str, Any]) -> None:
        self._results.write(json.dumps(row, sort_keys=True) + "\n")
        self._results.flush()

    def checkpoint(self, epoch: int, state: dict) -> None:
        from safetensors.torch import save_file

        folder = self.folder / checkpoint_name(epoch)
        folder.mkdir()
        # copies, because safetensors refuses tensors that share memory (tied weights, e.g. GPT-2's head)
        save_file({k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}, folder / WEIGHTS)
        self.epochs.append(epoch)

    def publish(self, status: Literal["ok", "diverged"], **info: Any) -> Path:
        """Write the marker last, then move the finished folder into models/ atomically."""
        self._results.close()
        files = {}
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            files[str(path.relative_to(self.folder))] = {"size": path.stat().st_size, "sha256": sha256(path)}
        marker = {"status": status, "epochs": self.epochs, "files": files, **info}
        atomic.write_json(self.folder / MARKER, marker)
        target = atomic.redirect(self.zoo.models_dir / self.model_id)
        _move_into_place(self.folder, target)
        return target

    def discard(self) -> None:
        self._results.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def install(files: Mapping[Path, bytes]) -> None:
    """Write the files a unit wrote under `atomic.capture` into the store, as atomically as the unit would have.

    A model folder (one holding a completion marker) is built in its zoo's staging area and renamed
    into place in one step, replacing a damaged earlier copy as `ModelWriter.publish` does; any other
    file (an annotation, a method result) is written atomically.
    """
    folders = sorted({path.parent for path in files if path.name == MARKER})
    for folder in folders:
        staging = _staging_folder(folder.parent.parent, folder.name)
        try:
            for path, data in files.items():
                if folder in path.parents:
                    atomic.write_bytes(staging / path.relative_to(folder), data)
            _move_into_place(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    for path, data in files.items():
        if not any(folder in path.parents for folder in folders):
            atomic.write_bytes(path, data)


def _staging_folder(zoo_path: Path, model_id: str) -> Path:
    """A new folder in the zoo's staging area, which nothing reads and `ZooStore.writing` clears."""
    return zoo_path / ".staging" / f"{model_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _move_into_place(folder: Path, target: Path) -> None:
    """Rename a finished model folder to `target` (``<zoo>/models/<id>``), so it appears complete or not at all.

    A damaged earlier copy there is first moved aside atomically, then deleted: readers never see a mix.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        trash = target.parent.parent / ".trash" / f"{target.name}-{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(exist_ok=True)
        os.rename(target, trash)
        shutil.rmtree(trash)
    os.rename(folder, target)


