"""Strict conversion of parsed TOML tables into frozen dataclasses.

Specs are data written by hand, so every mistake must be caught at load time and reported with the
file and the dotted key: an unknown key, a wrong type, a missing required key, a value outside a
``Literal``. The supported field types are the few a spec or a method's config needs: bool, int, float, str,
Literal, ``X | None``, ``tuple[X, ...]``, nested dataclasses, and ``Annotated[X, Range(low, high)]``
for numbers that must lie in an interval.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union

from zoobench.errors import UsageError

T = TypeVar("T")


class SpecError(UsageError):
    """A spec file is malformed; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class Range:
    """A closed interval a number must lie in: ``Annotated[float, Range(0.0, 1.0)]``; None is unbounded."""

    low: float | None = None
    high: float | None = None

    def __contains__(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f">= {self.low:g}"
        if self.low is None:
            return f"<= {self.high:g}"
        return f"in [{self.low:g}, {self.high:g}]"


def hints(cls: type) -> dict[str, Any]:
    """A dataclass's field types, with their `Range` annotations kept."""
    return typing.get_type_hints(cls, include_extras=True)


def from_table(cls: type[T], table: Any, where: str, source: str) -> T:
    """Build dataclass `cls` from `table`; `where` is the dotted key prefix, `source` the file."""
    if not isinstance(table, dict):
        raise SpecError(f"{source}: [{where}] must be a table, got {_describe(table)}")
    types_of = hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise SpecError(
            f"{source}: unknown key '{_join(where, unknown[0])}'; valid keys in [{where}]: "
            f"{', '.join(fields)}"
        )
    values = {}
    for name, field in fields.items():
        key = _join(where, name)
        if name in table:
            values[name] = convert(types_of[name], table[name], key, source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SpecError(f"{source}: missing required key '{key}' ({type_name(types_of[name])})")
    return cls(**values)


def convert(hint: Any, value: Any, key: str, source: str) -> Any:
    """Check `value` against the type `hint` and return it in canonical form (ints as floats, lists as tuples)."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        value = convert(base, value, key, source)
        for bound in extras:
            if isinstance(bound, Range) and value not in bound:
                raise SpecError(f"{source}: '{key}' must be {type_name(hint)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_table(hint, value, key, source)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or len(options) != 1:
            raise SpecError(f"{source}: '{key}' must be {type_name(hint)}, got {_describe(value)}")
        return convert(options[0], value, key, source)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise SpecError(f"{source}: '{key}' must be one of {type_name(hint)}, got {value!r}")
        return value
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise SpecError(f"{source}: '{key}' must be a list of {type_name(item_hint)}, got {_describe(value)}")
        return tuple(convert(item_hint, item, f"{key}[{i}]", source) for i, item in enumerate(value))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (bool, int, str) and type(value) is hint:
        return value
    if hint is Any:
        return value
    raise SpecError(f"{source}: '{key}' must be {type_name(hint)}, got {_describe(value)}")


def type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        return " ".join([type_name(base), *(str(b) for b in extras if isinstance(b, Range))])
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {type_name(typing.get_args(hint)[0])}"
    if hint is type(None):
        return "absent"
    if dataclasses.is_dataclass(hint):
        return "a table"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}" if not isinstance(value, dict) else "a table"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def options_from_table(
    declared: dict[str, Any], choices: dict[str, tuple], table: dict, where: str, source: str, owner: str
) -> dict[str, Any]:
    """Validate free-form options (a model's or dataset's) against declared defaults.

    Each option's type is the type of its default; `choices` restricts some to a fixed set. Returns
    the complete options: defaults overridden by the table.
    """
    options = dict(declared)
    for name, value in table.items():
        key = _join(where, name)
        if name not in declared:
            valid = ", ".join(declared) or "none"
            raise SpecError(f"{source}: unknown key '{key}' for {owner}; valid options: {valid}")
        options[name] = option_value(declared[name], choices.get(name), value, key, source)
    return options


def option_value(default: Any, allowed: tuple | None, value: Any, key: str, source: str) -> Any:
    """Check one option value against the type of its default and its allowed values."""
    value = convert(type(default), value, key, source)
    if allowed is not None and value not in allowed:
        raise SpecError(f"{source}: '{key}' must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value
