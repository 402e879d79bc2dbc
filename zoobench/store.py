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
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from zoobench import atomic
from zoobench.errors import UsageError, ZoobenchError
from zoobench.registry import unknown_name
from zoobench.spec import ZooSpec, builtin_spec_paths, load_spec, parse_table

MARKER = "done.json"
WEIGHTS = "model.safetensors"


def default_home() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "zoobench"


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


class Store:
    """All zoos under one home folder."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home or os.environ.get("ZOOBENCH_HOME") or default_home()).expanduser().absolute()

    def zoo(self, spec: ZooSpec) -> ZooStore:
        return ZooStore(self.home / "zoos" / f"{spec.name}-{spec.fingerprint}", spec)

    def resolve(self, name_or_path: str) -> ZooSpec:
        """A spec file, a built-in zoo, or a zoo found only in this store (generated from a file elsewhere)."""
        if Path(name_or_path).suffix == ".toml" or name_or_path in builtin_spec_paths():
            return load_spec(name_or_path)
        stored = [z.spec for z in self.zoos() if z.spec.name == name_or_path]
        if len(stored) > 1:
            variants = ", ".join(f"{s.name}-{s.fingerprint} (from {s.source})" for s in stored)
            raise UsageError(f"zoo '{name_or_path}' has {len(stored)} variants in {self.home}: {variants}; "
                             f"pass the spec file instead of the name")
        if not stored:
            raise unknown_name("zoo", name_or_path, sorted({*builtin_spec_paths(), *(z.spec.name for z in self.zoos())}))
        return stored[0]

    def zoos(self) -> list[ZooStore]:
        """Every zoo that has a folder in this store, with the spec it was generated from."""
        found = []
        for spec_file in sorted((self.home / "zoos").glob("*/spec.json")):
            table = json.loads(spec_file.read_text())
            found.append(ZooStore(spec_file.parent, parse_table(table["spec"], table["source"])))
        return found


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
        if not self.models_dir.is_dir():
            return []
        return [self._read_record(folder.name) for folder in sorted(self.models_dir.iterdir())
                if self.problem(folder.name) is None]

    def cells(self):
        """Every cell of the spec's grid with how many of its models are finished and diverged (pandas)."""
        import pandas as pd

        from zoobench.grid import cells

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
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        record = self.record(model_id)
        epoch = self.spec.metric_epoch if epoch is None else epoch
        if epoch not in record.epochs:
            if record.status == "diverged":
                raise ZoobenchError(f"model {model_id} diverged; stored epochs: {_listing(record.epochs)}")
            raise UsageError(f"model {model_id} has no checkpoint at epoch {epoch}; stored: {_listing(record.epochs)}")
        path = record.path / checkpoint_name(epoch) / WEIGHTS
        try:
            return load_file(path)
        except (SafetensorError, OSError) as error:
            raise ZoobenchError(f"checkpoint {path} is corrupt ({error}); delete {record.path} and "
                                f"re-run `zoobench zoo generate` to retrain it") from None

    def load_model(self, model_id: str, epoch: int | None = None):
        """The model as an ``nn.Module`` in eval mode, rebuilt from its params.json."""
        from zoobench.training import build_model

        model = build_model(self.params(model_id)["recipe"])
        model.load_state_dict(self.load_state(model_id, epoch))
        return model.eval()

    def verify(self) -> dict[str, str]:
        """Model id -> problem for every model folder that fails a full hash check."""
        problems = {}
        for folder in sorted(self.models_dir.iterdir()) if self.models_dir.is_dir() else []:
            problem = self.problem(folder.name)
            if problem is None:
                files = json.loads((folder / MARKER).read_text())["files"]
                bad = [name for name, meta in files.items() if _sha256(folder / name) != meta["sha256"]]
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

    def new_model(self, model_id: str, params: dict[str, Any]) -> ModelWriter:
        return ModelWriter(self, model_id, params)


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
            files[str(path.relative_to(self.folder))] = {"size": path.stat().st_size, "sha256": _sha256(path)}
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listing(epochs) -> str:
    return ", ".join(map(str, epochs)) or "none"
