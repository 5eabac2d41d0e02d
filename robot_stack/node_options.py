"""Node options as typed dataclasses, read one way: one ROS parameter per field.

``read_options(node, Options)`` declares every field of the dataclass as a parameter (its default,
and its ``typed_config.field`` doc as the description), reads the values the launch file or
``--ros-args`` gave, and builds the dataclass, so a wrong value is one line naming the parameter.
``read_options_before(name, Options)`` does it with a short-lived node of that name, for options
needed before the real node can be built (a backend to open first); launch parameters and remaps
apply to it as to the real node.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from robot_stack.errors import UserError

T = TypeVar("T")

Quoted = typing.NewType("Quoted", str)
"""A string option given as a string only: a bare number (``serial:=017322071``, which YAML turns into
an integer without its leading zeros) is a one-line error asking for quotes."""


def read_options(node: Any, cls: type[T], defaults: T | None = None) -> T:
    """``defaults``: an instance whose values replace the class defaults (e.g. a command line's)."""
    from rcl_interfaces.msg import ParameterDescriptor

    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        descriptor = ParameterDescriptor(description=f.metadata.get("doc", ""), dynamic_typing=True)
        value = node.declare_parameter(f.name, default, descriptor).value
        values[f.name] = _coerce(hints[f.name], value, node.get_name(), f.name)
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise UserError(f"{node.get_name()}: bad parameters: {err}") from None


def declare_options(node: Any, options: Any) -> None:
    """Declare the fields of an options dataclass with their values (visible to parameter tools, readable later)."""
    from rcl_interfaces.msg import ParameterDescriptor

    for f in dataclasses.fields(options):
        descriptor = ParameterDescriptor(description=f.metadata.get("doc", ""), dynamic_typing=True)
        node.declare_parameter(f.name, getattr(options, f.name), descriptor, ignore_override=True)


def _coerce(kind: Any, value: Any, node_name: str, name: str) -> Any:
    """A parameter value as the field's type (launch files give numbers and strings loosely)."""
    what = f"{node_name}: parameter {name!r}"
    if kind is Quoted:
        if isinstance(value, str):
            return value
        raise UserError(f"{what}: pass it as a string, e.g. {name}:=\"'{value}'\" (a bare number loses leading zeros)")
    if kind is str:
        return str(value)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is bool and str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    if kind in (int, float) and not isinstance(value, bool):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and (kind is float or float(value) == number):
            return number
    if kind not in (int, float, bool):
        return value
    raise UserError(f"{what} must be {kind.__name__}, got {value!r}")


def read_options_before(name: str, cls: type[T]) -> T:
    from rclpy.node import Node

    probe = Node(name)
    try:
        return read_options(probe, cls)
    finally:
        probe.destroy_node()
