"""One typed registry class for every kind of extension (datasets, architectures, metrics, methods).

Entries are either the object itself or a lazy ``"module:attribute"`` target that is imported on
first use, so listing names never imports torch. A miss answers with the closest names; a duplicate
name is an error that names both origins; an entry that fails to load, or that its registry's check
refuses, is a one-line error naming where it came from.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from zoobench.errors import UsageError, ZoobenchError

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    target: T | str
    origin: str
    loaded: bool = False


class Registry(Generic[T]):
    """Name -> entry, with lazy loading and helpful misses. Iterating gives names in registration
    order; `names` gives them sorted, for people."""

    def __init__(self, kind: str, check: Callable[[str, T], None] | None = None) -> None:
        """`check(name, entry)` raises a ZoobenchError when a loaded entry is not what this registry holds."""
        self.kind = kind
        self._check = check
        self._entries: dict[str, _Entry[T]] = {}

    def add(self, name: str, target: T | str, origin: str = "zoobench") -> None:
        if name in self._entries:
            raise ZoobenchError(
                f"{self.kind} '{name}' is registered twice: by {self._entries[name].origin} "
                f"and by {origin}; rename one of them"
            )
        self._entries[name] = _Entry(target, origin)

    def remove(self, name: str) -> None:
        """Take an entry back (e.g. one registered for the duration of a test)."""
        self._entry(name)  # an unknown name is the usual error
        del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def origin(self, name: str) -> str:
        return self._entry(name).origin

    def get(self, name: str) -> T:
        entry = self._entry(name)
        if not entry.loaded:
            target = entry.target
            if isinstance(target, str):
                target = load_target(target, f"{self.kind} '{name}'")
            if self._check is not None:
                self._check(name, target)
            entry.target, entry.loaded = target, True
        return entry.target

    def unknown(self, name: str) -> UsageError:
        return unknown_name(self.kind, name, self.names())

    def _entry(self, name: str) -> _Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise self.unknown(name) from None


def unknown_name(kind: str, name: str, valid: list[str]) -> UsageError:
    """The error for a name that is not known: closest matches first, then all valid names."""
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return UsageError(f"unknown {kind} '{name}'; {hint}valid: {', '.join(sorted(valid))}")


def load_target(target: str, what: str):
    """Import ``"module:attribute"``; a failure is a one-line error naming `what` was being loaded."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as error:
        raise ZoobenchError(f"{what} could not be loaded from {target}: {error}") from None
