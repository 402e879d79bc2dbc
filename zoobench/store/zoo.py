"""The zoo store: one folder per zoo, one folder per model, every model published atomically.

Layout under ``$ZOOBENCH_HOME`` (default: the user's cache folder)::

    zoos/<zoo>-<fingerprint>/spec.json
    zoos/<zoo>-<fingerprint>/models/<model id>/params.json         how to rebuild and retrain it
    zoos/<zoo>-<fingerprint>/models/<model id>/result.json         JSON lines, one per epoch
    zoos/<zoo>-<fingerprint>/models/<model id>/checkpoint_000030/model.safetensors
    zoos/<zoo>-<fingerprint>/models/<model id>/done.json           completion marker, written last

A model is trained in ``.staging/`` and renamed into ``models/`` only once its marker is written, so
a model folder either is complete or does not exist; the marker's file sizes and hashes catch a
checkpoint damaged afterwards. The layout mirrors the published Phase Transition Model Zoo (Ray
Tune trial folders with params.json, result.json and checkpoint_NNNNNN/), so import and export stay
simple.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from zoobench.errors import UsageError, ZoobenchError
from zoobench.spec import ZooSpec
from zoobench.store import atomic

MARKER = "done.json"
WEIGHTS = "model.safetensors"


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_{epoch:06d}"


@dataclass(frozen=True)
class ModelRecord:
    """A finished model as the store knows it (from its params.json and completion marker)."""

    id: str
    cell_id: str
    load: Any
    temperature: Any
    seed: int
    status: Literal["ok", "diverged"]
    epochs: tuple[int, ...]  # stored checkpoint epochs
    path: Path


class ZooStore:
    """One zoo's folder: lists, validates, loads and publishes its models."""

    def __init__(self, path: Path, spec: ZooSpec) -> None:
        self.path = path
        self.spec = spec
        self.models_dir = path / "models"

    # ---- reading -------------------------------------------------------------------------------

    def problem(self, model_id: str) -> str | None:
        """Why the stored model is not usable (missing, unfinished, damaged), or None if it is."""
        folder = self.models_dir / model_id
        if not folder.is_dir():
            return "not trained"
        try:
            marker = json.loads((folder / MARKER).read_text())
            files = marker["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"{MARKER} is missing or unreadable"
        for name, expected in files.items():
            try:
                size = (folder / name).stat().st_size
            except OSError:
                return f"{name} is missing"
            if size != expected["size"]:
                return f"{name} has {size} bytes, expected {expected['size']} (truncated or overwritten)"
        return None

    def models(self) -> list[ModelRecord]:
        """Every finished (including diverged) model whose files are intact."""
        return [self._read_record(model_id) for model_id in self._folders() if self.problem(model_id) is None]

    def has_weights(self) -> bool:
        """False for a zoo of published metrics only (models without a single checkpoint)."""
        records = self.models()
        return not records or any(r.epochs for r in records)

    def require_weights(self, needed_for: str) -> None:
        """Refuse, in one line, a zoo of published metrics only."""
        if not self.has_weights():
            raise UsageError(f"zoo {self.spec.name} holds published metrics only, no weights; {needed_for} needs "
                             f"the models: import its trial folders with checkpoints, or generate the zoo")

    def damaged(self) -> dict[str, str]:
        """Model id -> what is wrong, for every model folder that is not intact (a quick size check;
        `verify` checks hashes). Such a model is left out of `models` until it is retrained."""
        problems = {model_id: self.problem(model_id) for model_id in self._folders()}
        return {model_id: problem for model_id, problem in problems.items() if problem is not None}

    def checkpoint_hashes(self, epoch: int) -> dict[str, dict[str, str]]:
        """Cell id -> model id -> SHA-256 of the model's checkpoint at `epoch` (its status when it has none).

        What a result computed from a cell's models depends on: any retrained or added model changes it.
        """
        path = f"{checkpoint_name(epoch)}/{WEIGHTS}"
        found: dict[str, dict[str, str]] = {}
        for record in self.models():
            files = json.loads((record.path / MARKER).read_text())["files"]
            found.setdefault(record.cell_id, {})[record.id] = files[path]["sha256"] if path in files else record.status
        return found

    def _folders(self) -> list[str]:
        return sorted(folder.name for folder in self.models_dir.iterdir()) if self.models_dir.is_dir() else []

    def cells(self):
        """Every cell of the spec's grid with how many of its models are finished and diverged (pandas)."""
        import pandas as pd

        from zoobench.spec.grid import cells

        records = self.models()
        rows = []
        for c in cells(self.spec):
            in_cell = [r for r in records if r.cell_id == c.id]
            rows.append({"cell_id": c.id, "load": c.load, "temperature": c.temperature,
                         "seeds": len(self.spec.grid.seeds), "finished": len(in_cell),
                         "diverged": sum(r.status == "diverged" for r in in_cell)})
        return pd.DataFrame(rows)

    def record(self, model_id: str) -> ModelRecord:
        self._require_usable(model_id)
        return self._read_record(model_id)

    def _read_record(self, model_id: str) -> ModelRecord:
        folder = self.models_dir / model_id
        params = json.loads((folder / "params.json").read_text())
        marker = json.loads((folder / MARKER).read_text())
        return ModelRecord(
            model_id, params["cell_id"], params["load"]["value"], params["temperature"]["value"],
            params["seed"], marker["status"], tuple(marker["epochs"]), folder,
        )

    def params(self, model_id: str) -> dict[str, Any]:
        self._require_usable(model_id)
        return json.loads((self.models_dir / model_id / "params.json").read_text())

    def results(self, model_ids: list[str] | None = None):
        """Per-epoch results of the given (default: all finished) models as one pandas DataFrame."""
        import pandas as pd

        records = [self.record(m) for m in model_ids] if model_ids is not None else self.models()
        frames = []
        for rec in records:
            rows = [json.loads(line) for line in (rec.path / "result.json").read_text().splitlines() if line]
            frame = pd.DataFrame(rows)
            for column, value in [("model_id", rec.id), ("cell_id", rec.cell_id), ("load", rec.load),
                                  ("temperature", rec.temperature), ("seed", rec.seed)]:
                frame.insert(0, column, value)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def load_state(self, model_id: str, epoch: int | None = None) -> dict:
        """The weights of a model at a stored epoch (default: the spec's metric epoch)."""
        from safetensors.torch import load_file

        with self._checkpoint(model_id, epoch) as path:
            return load_file(path)

    def tensor_shapes(self, model_id: str, epoch: int | None = None) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor of a stored checkpoint, read from its header alone."""
        from safetensors import safe_open

        with self._checkpoint(model_id, epoch) as path, safe_open(path, "pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}

    @contextmanager
    def _checkpoint(self, model_id: str, epoch: int | None) -> Iterator[Path]:
        """The checkpoint file of a model at a stored epoch; reading it inside the block turns a corrupt
        file into one line saying how to repair it."""
        from safetensors import SafetensorError

        record = self.record(model_id)
        epoch = self.spec.metric_epoch if epoch is None else epoch
        if epoch not in record.epochs:
            if record.status == "diverged":
                raise ZoobenchError(f"model {model_id} diverged; stored epochs: {_listing(record.epochs)}")
            raise UsageError(f"model {model_id} has no checkpoint at epoch {epoch}; stored: {_listing(record.epochs)}")
        path = record.path / checkpoint_name(epoch) / WEIGHTS
        try:
            yield path
        except (SafetensorError, OSError) as error:
            raise ZoobenchError(f"checkpoint {path} is corrupt ({error}); delete {record.path} and "
                                f"re-run `zoobench zoo generate` to retrain it") from None

    def load_model(self, model_id: str, epoch: int | None = None):
        """The model as an ``nn.Module`` in eval mode, rebuilt from its params.json."""
        from zoobench.models import build_model

        model = build_model(self.params(model_id)["recipe"])
        model.load_state_dict(self.load_state(model_id, epoch))
        return model.eval()

    def verify(self) -> dict[str, str]:
        """Model id -> problem for every model folder that fails a full hash check."""
        problems = {}
        for folder in (self.models_dir / model_id for model_id in self._folders()):
            problem = self.problem(folder.name)
            if problem is None:
                files = json.loads((folder / MARKER).read_text())["files"]
                bad = [name for name, meta in files.items() if sha256(folder / name) != meta["sha256"]]
                problem = f"{bad[0]} does not match its recorded hash" if bad else None
            if problem is not None:
                problems[folder.name] = problem
        return problems

    def _require_usable(self, model_id: str) -> None:
        problem = self.problem(model_id)
        if problem == "not trained":
            raise UsageError(f"model {model_id} is not in zoo {self.spec.name} at {self.path}; "
                             f"run `zoobench zoo generate {self.spec.name}`")
        if problem is not None:
            raise ZoobenchError(f"model {model_id} in {self.path} is damaged: {problem}; re-run "
                                f"`zoobench zoo generate {self.spec.name}` to retrain it")

    # ---- writing -------------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the zoo's lock for a generation; clears what interrupted runs left in staging."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                raise ZoobenchError(f"zoo {self.spec.name} at {self.path} is being written by another zoobench "
                                    f"process (pid {lock.read().strip() or '?'}); wait for it or stop it") from None
            lock.seek(0)
            lock.truncate()
            lock.write(str(os.getpid()))
            lock.flush()
            for leftovers in (".staging", ".trash"):
                shutil.rmtree(self.path / leftovers, ignore_errors=True)
            if not (self.path / "spec.json").exists():
                atomic.write_json(self.path / "spec.json", {"source": self.spec.source, "spec": self.spec.to_table(),
                                                           "fingerprint": self.spec.fingerprint})
            yield


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listing(epochs) -> str:
    return ", ".join(map(str, epochs)) or "none"
