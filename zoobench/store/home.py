"""The store's home folder: every zoo under it, resolving zoo names, and the catalogue behind `zoo list`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from zoobench.errors import UsageError
from zoobench.registry import unknown_name
from zoobench.spec import ZooSpec, builtin_spec_paths, list_specs, load_spec, parse_table
from zoobench.store.zoo import ZooStore


def default_home() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "zoobench"


@dataclass(frozen=True)
class CatalogueEntry:
    """One zoo as `zoo list` shows it: a built-in spec, or a zoo found only in the store."""

    spec: ZooSpec
    builtin: bool
    models: int  # finished models in the store
    grid_models: int  # models the full grid has

    @property
    def grid(self) -> str:
        g = self.spec.grid
        return f"{len(g.load.values)}x{len(g.temperature.values)}x{len(g.seeds)}"


class Store:
    """All zoos under one home folder."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home or os.environ.get("ZOOBENCH_HOME") or default_home()).expanduser().absolute()

    def zoo(self, spec: ZooSpec) -> ZooStore:
        return ZooStore(self.home / "zoos" / f"{spec.name}-{spec.fingerprint}", spec)

    def resolve(self, name_or_path: str) -> ZooSpec:
        """A spec file, a built-in zoo, a shipped reference zoo (``cifar10_r18@ptmz``, imported here on
        first use), or a zoo found only in this store (generated from a file elsewhere)."""
        from zoobench.store import reference

        if name_or_path.endswith(reference.SUFFIX):
            return reference.open_shipped(self, name_or_path)
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

    def catalogue(self) -> list[CatalogueEntry]:
        """Every built-in zoo, then every zoo stored here that is not one of them (reference zoos apart,
        see `reference_catalogue`), with its model counts."""
        from zoobench.store.reference import SUFFIX

        builtin = list_specs()
        known = {(spec.name, spec.fingerprint) for spec in builtin}
        stored = [zoo.spec for zoo in self.zoos() if (zoo.spec.name, zoo.spec.fingerprint) not in known
                  and not zoo.spec.name.endswith(SUFFIX)]
        return [CatalogueEntry(spec, spec in builtin, len(self.zoo(spec).models()), _grid_models(spec))
                for spec in [*builtin, *stored]]


def _grid_models(spec: ZooSpec) -> int:
    g = spec.grid
    return len(g.load.values) * len(g.temperature.values) * len(g.seeds)
