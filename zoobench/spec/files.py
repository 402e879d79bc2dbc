"""Finding and reading zoo specs: the built-in ones shipped in ``zoobench.zoos`` and any file by path."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from zoobench.registry import unknown_name
from zoobench.spec.schema import ZooSpec, parse_table
from zoobench.spec.strict import SpecError


def read_spec_file(path: Path) -> ZooSpec:
    """Parse one spec file; a missing or malformed file is a one-line `SpecError`."""
    try:
        table = tomllib.loads(path.read_text())
    except OSError as error:
        raise SpecError(f"{path}: cannot read spec ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: not valid TOML: {error}") from None
    return parse_table(table, str(path))


def builtin_spec_paths() -> dict[str, Path]:
    """Name -> file of the specs shipped in zoobench.zoos."""
    folder = resources.files("zoobench.zoos")
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def load_spec(name_or_path: str | Path) -> ZooSpec:
    """A built-in zoo by name (``digits_mlp``) or any spec file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return read_spec_file(path)
    builtins = builtin_spec_paths()
    if str(name_or_path) not in builtins:
        raise unknown_name("zoo", str(name_or_path), list(builtins))
    return read_spec_file(builtins[str(name_or_path)])


def list_specs() -> list[ZooSpec]:
    """Every built-in spec, parsed (so a broken shipped spec fails loudly)."""
    return [read_spec_file(path) for _, path in sorted(builtin_spec_paths().items())]
