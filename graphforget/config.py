"""Typed configs from plain options: one parser for the API, the command line and stored runs.

A method's options are the fields of its config dataclass; nested configs are reached by dotted names
(``solver.tol``, ``train.lr``). :func:`build_config` turns ``{"solver.tol": "1e-4"}`` (strings from a
command line, or typed values) into the config, parsing each value by its field's type and naming the
field in every error; :func:`describe` lists the fields with their types, defaults and help.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, NamedTuple

__all__ = ["build_config", "describe", "check_fields", "FieldHelp"]

_NONE = {"none", "null"}
_BOOLS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


class FieldHelp(NamedTuple):
    """One option of a config: its dotted ``name``, ``type`` (as written), ``default`` and ``help``."""
    name: str
    type: str
    default: Any
    help: str


def check_fields(config: Any, rules: dict[str, tuple[bool, str]]) -> None:
    """Raises ``ValueError("Cls.field: <requirement> (got <value>)")`` for the first rule that fails.

    Args:
        config: the config (its class names the error).
        rules: ``{field: (holds, "what the value must be")}``; a dotted field names a nested value.
    """
    for name, (holds, requirement) in rules.items():
        if not holds:
            value = config
            for part in name.split("."):
                value = getattr(value, part, None)
            raise ValueError(f"{type(config).__name__}.{name}: {requirement} (got {value!r})")


def build_config(cls: type, options: dict[str, Any] | None = None, base: Any = None):
    """``cls`` built from ``options`` (keys are field names, dotted for nested configs).

    Args:
        cls: a config dataclass.
        options: the values to set; a string is parsed by the field's type (``"none"`` is ``None`` where
            the field allows it; tuples are comma-separated); a dict sets a nested config's fields.
        base: a ``cls`` instance whose values the options change (default: ``cls()``).

    Raises:
        ValueError: ``Cls.field: ...`` for an unknown field, a value of the wrong type, or a value the
            config's own checks reject.
    """
    grouped: dict[str, Any] = {}
    for key, value in (options or {}).items():
        head, _, rest = key.partition(".")
        if rest:
            grouped.setdefault(head, {})[rest] = value
        elif isinstance(value, dict) and head in grouped:
            grouped[head].update(value)
        else:
            grouped[head] = value
    return _build(cls, grouped, base, cls.__name__)


def _build(cls: type, options: dict[str, Any], base: Any, path: str):
    hints, known = typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                         f"(known: {', '.join(known)})")
    values = {}
    for name, value in options.items():
        kind, where = hints[name], f"{path}.{name}"
        nested = _dataclass_in(kind)
        if nested is not None and isinstance(value, dict):
            current = getattr(base, name, None) if base is not None else None
            value = _build(nested, value, current if isinstance(current, nested) else None, where)
        values[name] = _coerce(value, kind, where)
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except (TypeError, ValueError) as error:
        message = str(error)
        raise ValueError(message if message.startswith(path) else f"{path}: {message}") from error


def _dataclass_in(kind) -> type | None:
    """The dataclass a field of type ``kind`` holds (``X`` or ``X | None``), else ``None``."""
    for option in _union(kind):
        if dataclasses.is_dataclass(option):
            return option
    return None


def _union(kind) -> tuple:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.get_args(kind)
    return (kind,)


def _coerce(value: Any, kind, where: str) -> Any:
    """``value`` as a ``kind``: strings are parsed, typed values checked; the first option that fits wins."""
    for option in _union(kind):
        converted = _as(value, option)
        if converted is not _MISS:
            return converted
    raise ValueError(f"{where}: expected {_name(kind)}, got {value!r}")


_MISS = object()


def _as(value: Any, kind) -> Any:
    """``value`` converted to ``kind``, or ``_MISS`` when it cannot be one."""
    text = value.strip() if isinstance(value, str) else None
    if kind is type(None):
        return None if value is None or (text is not None and text.lower() in _NONE) else _MISS
    if kind is typing.Any:
        return value
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return value if value in typing.get_args(kind) else _MISS
    if origin is tuple:
        return _as_tuple(value, typing.get_args(kind))
    if kind is bool:
        if isinstance(value, bool):
            return value
        return _BOOLS.get(text.lower(), _MISS) if text is not None else _MISS
    if kind in (int, float):
        return _as_number(value, text, kind)
    if kind is str:
        return value if isinstance(value, str) else _MISS
    return value if isinstance(value, kind) else _MISS


def _as_number(value: Any, text: str | None, kind: type) -> Any:
    if isinstance(value, bool):
        return _MISS
    if text is not None:
        try:
            value = int(text) if kind is int else float(text)
        except ValueError:
            return _MISS
    if kind is int:
        return value if isinstance(value, int) else _MISS
    return float(value) if isinstance(value, (int, float)) else _MISS


def _as_tuple(value: Any, args: tuple) -> Any:
    if isinstance(value, str):
        value = [part for part in value.strip().strip("()[]").split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        return _MISS
    kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
    if len(kinds) != len(value):
        return _MISS
    items = [_as(item, kind) for item, kind in zip(value, kinds)]
    return _MISS if any(item is _MISS for item in items) else tuple(items)


def _name(kind) -> str:
    """``float | 'auto'``, ``tuple[float, ...] | None``, ``TrainConfig``: a type as one writes it."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_name(arg) for arg in args)
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is tuple:
        return f"tuple[{', '.join('...' if arg is Ellipsis else _name(arg) for arg in args)}]"
    return "None" if kind is type(None) else getattr(kind, "__name__", str(kind))


def describe(cls: type, prefix: str = "") -> list[FieldHelp]:
    """Every option of the config ``cls`` (nested configs expanded, dotted), in declaration order.

    The help of a field is its entry in the ``Args:`` section of the class docstring.
    """
    hints, notes, rows = typing.get_type_hints(cls), _arg_notes(cls), []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        nested = _dataclass_in(hints[f.name])
        if nested is not None and f.default is not None:
            rows += describe(nested, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append(FieldHelp(prefix + f.name, _name(hints[f.name]), default, notes.get(f.name, "")))
    return rows


def _arg_notes(cls: type) -> dict[str, str]:
    """``{field: help}`` from the ``Args:`` sections of the docstrings of ``cls`` and its bases."""
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        notes.update(_own_arg_notes(klass))
    return notes


def _own_arg_notes(cls: type) -> dict[str, str]:
    doc = (cls.__dict__.get("__doc__") or "").split("Args:", 1)
    if len(doc) < 2:
        return {}
    notes, current = {}, None
    for line in doc[1].splitlines():
        match = re.match(r"^\s{4,8}(\w+(?:,\s*\w+)*):\s*(.*)$", line)
        if match:
            current = [name.strip() for name in match.group(1).split(",")]
            for name in current:
                notes[name] = match.group(2).strip()
        elif line.strip() and current and not re.match(r"^\s{0,3}\S", line):
            for name in current:
                notes[name] += " " + line.strip()
        elif line.strip() and re.match(r"^\s{0,3}\S", line):
            break
    return {name: re.sub(r"\s+", " ", text).strip() for name, text in notes.items()}
