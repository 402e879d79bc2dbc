"""Stored method results: one JSON file per unit (a cell, or a zoo-scope method's split).

Layout: ``zoos/<zoo>-<fingerprint>/results/<method>/v<version>-<key>/`` where the key hashes the
method's version, config and epoch, so results are keyed by (zoo fingerprint, method, version,
config hash, unit). ``run.json`` holds the provenance (config, plugin origin, library versions);
each ``<unit>.json`` holds the values, the status, and a digest of its inputs (checkpoint hashes and
the annotations the method saw): a unit is redone when the digest changes or when it failed.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from typing import Any

from zoobench import __version__
from zoobench.method import Method, config_table, spec_values
from zoobench.store import ZooStore, atomic


def digest(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


class MethodResults:
    """The results of one method, version and config on one zoo at one epoch."""

    def __init__(self, zoo: ZooStore, method: type[Method], config: Any, epoch: int) -> None:
        self.zoo = zoo
        self.method = method
        self.config = config_table(config)
        self.epoch = epoch
        self.spec_fields = spec_values(zoo.spec, method.spec_fields)  # empty for most methods: keys as before
        key = {"version": method.version, "config": self.config, "epoch": epoch}
        self.config_hash = digest({**key, "spec": self.spec_fields} if self.spec_fields else key)[:10]
        self.folder = zoo.path / "results" / method.name / f"v{method.version}-{self.config_hash}"

    def provenance(self, origin: str) -> dict[str, Any]:
        import torch

        return {"zoo": self.zoo.spec.name, "fingerprint": self.zoo.spec.fingerprint, "method": self.method.name,
                "version": self.method.version, "config": self.config, "config_hash": self.config_hash,
                "epoch": self.epoch, "headline": self.method.headline, **self.spec_record(),
                "higher_is_better": self.method.higher_is_better, "scope": self.method.scope, "origin": origin,
                "versions": {"zoobench": __version__, "torch": torch.__version__,
                             "python": platform.python_version()}}

    def spec_record(self) -> dict[str, Any]:
        """The spec fields in the results' key, for a provenance record (nothing when there are none, so
        the records of methods that read none stay as they were)."""
        return {"spec_fields": self.spec_fields} if self.spec_fields else {}

    def start(self, origin: str) -> None:
        """Record the provenance once (the first run of this key writes it)."""
        if not (self.folder / "run.json").exists():
            atomic.write_json(self.folder / "run.json", self.provenance(origin))

    def stored(self, unit_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / f"{unit_id}.json").read_text())
        except (OSError, ValueError):
            return None

    def is_current(self, unit_id: str, inputs_digest: str) -> bool:
        record = self.stored(unit_id)
        return record is not None and record.get("status") != "failed" and record.get("inputs") == inputs_digest

    def write(self, unit_id: str, inputs_digest: str, status: str, values: dict[str, Any], models: int,
              seconds: float, error: str = "", details: str = "") -> None:
        atomic.write_json(self.folder / f"{unit_id}.json", {
            "unit": unit_id, "inputs": inputs_digest, "status": status, "values": values, "models": models,
            "seconds": seconds, "error": error, "details": details})

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(path.read_text()) for path in sorted(self.folder.glob("*.json")) if path.name != "run.json"]

    def table(self):
        """One row per stored unit: where it is on the grid, its status and values (pandas), in grid order
        (by load, then temperature), the order published boards have: the bootstrap intervals computed
        from either are then the same numbers."""
        import pandas as pd

        from zoobench.spec.grid import cells

        position = {c.id: c for c in cells(self.zoo.spec)}
        rows = []
        for record in self.records():
            place = position.get(record["unit"])
            rows.append({"zoo": self.zoo.spec.name, "fingerprint": self.zoo.spec.fingerprint,
                         "method": self.method.name, "version": self.method.version,
                         "config_hash": self.config_hash, "unit": record["unit"],
                         "load": place.load if place else None, "temperature": place.temperature if place else None,
                         "status": record["status"], "n_models": record["models"], "error": record["error"],
                         **record["values"]})
        rows.sort(key=lambda row: (0, row["load"], row["temperature"], row["unit"]) if row["load"] is not None
                  else (1, row["unit"]))  # units off the grid (a zoo-scope method's splits) by name
        return pd.DataFrame(rows)


def clean_values(values: Any, method: str) -> dict[str, float | None]:
    """A method's returned dict as finite floats (non-finite become None); anything else is an error."""
    if not isinstance(values, dict):
        raise TypeError(f"method {method} returned {type(values).__name__}, expected a dict of numbers")
    cleaned: dict[str, float | None] = {}
    for key, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            try:
                value = float(value)  # 0-d tensors and numpy scalars
            except (TypeError, ValueError):
                raise TypeError(f"method {method} returned {type(value).__name__} for '{key}', expected a number") \
                    from None
        cleaned[str(key)] = None if value is None or not math.isfinite(value) else float(value)
    return cleaned

