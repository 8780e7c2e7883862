"""Typed config dataclasses: field docs, command-line overrides, JSON round-trips.

Every config is a dataclass with a docstring under each field (the cleanrl/tyro convention). The docs are
read from the class source, so `--help` and error messages show them without a second copy.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import textwrap
import types
import typing
from collections.abc import Iterable
from functools import cache
from typing import Any

from visuomotor.errors import InvalidInputError


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it, for `cls` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def parse_value(text: str, tp: Any, name: str) -> Any:
    """Parse a command-line string into the field type `tp` (scalars, tuples, lists, dicts, Optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        if len(args) == 1:
            return parse_value(text, args[0], name)
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise InvalidInputError(f"{name}: expected true/false, got {text!r}")
    if tp in (int, float, str):
        try:
            return tp(text)
        except ValueError:
            raise InvalidInputError(f"{name}: expected {tp.__name__}, got {text!r}") from None
    if origin in (tuple, list, dict):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = [v for v in text.split(",") if v] if origin in (tuple, list) else None
            if value is None:
                raise InvalidInputError(f"{name}: expected JSON, got {text!r}") from None
        return coerce(value, tp, name)
    raise InvalidInputError(f"{name}: cannot parse values of type {tp}")


def coerce(value: Any, tp: Any, name: str) -> Any:
    """JSON value -> field type (lists to tuples, element types converted)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return coerce(value, args[0], name) if len(args) == 1 else value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise InvalidInputError(f"{name}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        elem = args[0] if args else Any
        items = [coerce(v, elem, name) if elem is not Any else v for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidInputError(f"{name}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp) or (Any, Any)
        return {k: coerce(v, vt, name) if vt is not Any else v for k, v in value.items()}
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and isinstance(value, str) and tp is not str:
        return parse_value(value, tp, name)
    expected = {float: (float,), int: (int,), bool: (bool,), str: (str,)}.get(tp)
    if expected is not None and (not isinstance(value, expected) or (tp is int and isinstance(value, bool))):
        raise InvalidInputError(f"{name}: expected {tp.__name__}, got {value!r:.80}")
    return value


def apply_overrides[T](config: T, overrides: dict[str, str]) -> T:
    """A copy of `config` with `field=value` strings applied; unknown fields list the valid ones."""
    types_ = _field_types(type(config))
    changes = {}
    for key, text in overrides.items():
        if key not in types_:
            valid = ", ".join(sorted(types_))
            raise InvalidInputError(f"{type(config).__name__} has no field '{key}'; valid fields: {valid}")
        changes[key] = parse_value(text, types_[key], f"{type(config).__name__}.{key}")
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict[T](cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build `cls` from a JSON mapping; unknown or mistyped fields raise an error naming them."""
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise InvalidInputError(f"{where}: unknown field(s) {unknown} for {cls.__name__}")
    values = {k: coerce(v, types_[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a value of the right type that __post_init__ cannot compare or combine
        raise InvalidInputError(f"{where}: {exc}") from exc


def check_bounds(
    config: Any,
    names: Iterable[str],
    low: float,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    """Each named field of `config` lies in [low, high] (or (low, ..., ...) when open); otherwise one error
    naming the field, the interval and the value. The configs' range checks all go through here."""
    for name in names:
        value = getattr(config, name)
        fits = (value > low if open_low else value >= low) and (
            high is None or (value < high if open_high else value <= high)
        )
        if not fits:
            if high is None:
                rule = f"{'>' if open_low else '>='} {low:g}"
            else:
                rule = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
            raise InvalidInputError(f"{name} must be {rule}, got {value}")


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"override must look like field=value, got {item!r}")
        out[key.strip()] = value
    return out


def describe(cls: type) -> str:
    """Fields, defaults and docs of a config class, for `--help`-style listings."""
    docs = field_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        )
        lines.append(f"  {f.name} = {default!r}\n      {docs.get(f.name, '')}")
    return "\n".join(lines)
