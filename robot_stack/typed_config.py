"""Typed configs: build frozen dataclasses from YAML/dicts with one-line errors naming the field.

Every config in robot_stack (robot profiles, policy and training configs, node options) is a
dataclass; ``from_dict`` checks each value against the field's type annotation, rejects unknown
keys and reports the first problem as ``<source>: <path.to.field>: <problem>``.
"""

from __future__ import annotations

import dataclasses
import math
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from robot_stack.errors import UserError

T = TypeVar("T")


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, turning I/O and syntax problems into a one-line UserError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not a YAML text file (invalid UTF-8 at byte {err.start})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{path}{where}: invalid YAML ({problem})") from None


def from_dict(cls: type[T], data: Any, source: str = "config") -> T:
    """Build dataclass ``cls`` from plain data (as loaded from YAML), validating every field."""
    return _convert(cls, data, source, "")


def from_yaml(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, load_yaml(path), str(path))


def to_dict(obj: Any) -> Any:
    """Plain-data form of a config dataclass (tuples become lists), suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


class _Invalid(Exception):
    def __init__(self, path: str, problem: str):
        super().__init__(path, problem)
        self.path, self.problem = path, problem


def _convert(tp: Any, value: Any, source: str, path: str) -> Any:
    try:
        return _value(tp, value, path)
    except _Invalid as err:
        raise UserError(f"{source}: {err.path or '<root>'}: {err.problem}") from None


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _value(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _value(option, value, path)
            except _Invalid as err:
                problems.append(err.problem)
        raise _Invalid(path, problems[0] if len(problems) == 1 else f"expected {_type_name(tp)}, got {value!r}")
    if value is None:
        raise _Invalid(path, f"missing value (expected {_type_name(tp)})")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise _Invalid(path, f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Invalid(path, f"expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Invalid(path, f"expected {len(args)} values, got {len(value)}")
            items = [_value(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_tp = args[0] if args else Any
            items = [_value(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _Invalid(path, f"expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {_value(key_tp, k, path): _value(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _Invalid(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(path, f"expected a number, got {value!r}")
        if math.isnan(value):
            raise _Invalid(path, "NaN is not allowed")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Invalid(path, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"typed_config does not support {tp!r} (at {path})")


def _dataclass(cls: type, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(value) and isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise _Invalid(path, f"expected a mapping for {cls.__name__}, got {value!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise _Invalid(_join(path, unknown[0]), f"unknown key (known keys: {', '.join(fields)})")
    kwargs = {}
    for name, field in fields.items():
        sub = _join(path, name)
        if name not in value:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                doc = field.metadata.get("doc")
                raise _Invalid(sub, "missing" + (f" ({doc})" if doc else ""))
            continue
        kwargs[name] = _value(hints[name], value[name], sub)
    try:
        return cls(**kwargs)
    except (ValueError, UserError) as err:
        raise _Invalid(path, str(err)) from None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def field(doc: str, **kwargs: Any) -> Any:
    """A dataclass field with a short description used in error messages."""
    return dataclasses.field(metadata={"doc": doc}, **kwargs)
