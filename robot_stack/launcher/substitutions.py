"""Substitutions of the ROS 2 launch XML frontend: ``$(var x)``, ``$(env X default)``, ``$(eval ...)``...

A template (any attribute value) parses into text and :class:`Substitution` parts; arguments are
separated by spaces and may be quoted (``'...'`` or ``"..."``) to hold spaces and nested
substitutions, as in ``$(eval "'$(var mode)' == 'sim'")``. Parsing checks names and argument counts,
so a bad substitution is reported before anything starts. ``$(eval)`` is evaluated by walking the
expression's AST: literals, arithmetic, comparisons, boolean operators and ``x if c else y`` only.

An empty quoted argument (``''`` or ``""``) is refused except as the default of ``$(var)`` and
``$(env)``: ros2 launch parses it into an empty list of substitutions, which those two read as the
empty string but ``$(equals)`` and the others turn into the text ``[]``, so
``$(equals '$(var x)' '')`` is never true there. Refusing it keeps every accepted file meaning the
same in both runners.
"""

from __future__ import annotations

import ast
import math
import operator
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import yaml

from robot_stack.errors import UserError


class SubstitutionError(UserError):
    """A template that cannot be parsed or evaluated (the caller adds file and line)."""


@dataclass(frozen=True)
class Substitution:
    name: str
    args: tuple[Template, ...]


Part = Union[str, Substitution]
Template = tuple  # tuple[Part, ...]; a plain alias keeps the recursive type simple


@dataclass
class Scope:
    """What substitutions read: launch configurations, the launch environment, the current file."""

    configurations: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    current_file: Path | None = None
    ros_namespace: str = ""


# name -> (min args, max args)
ARITY: dict[str, tuple[int, int]] = {
    "var": (1, 2),
    "env": (1, 2),
    "find-pkg-share": (1, 1),
    "find-pkg-prefix": (1, 1),
    "eval": (1, 1),
    "not": (1, 1),
    "and": (2, 2),
    "or": (2, 2),
    "equals": (2, 2),
    "not-equals": (2, 2),
    "dirname": (0, 0),
    "filename": (0, 0),
}
TRUE_WORDS, FALSE_WORDS = ("true", "1"), ("false", "0")
EMPTY_DEFAULT_OK = ("var", "env")  # substitutions whose second argument may be an empty quoted ''


# -- parsing ---------------------------------------------------------------------------------------
def parse(text: str) -> Template:
    """Parse an attribute value into a template (a tuple of text and substitutions)."""
    parser = _Parser(text)
    parts = parser.template()
    return tuple(parts)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def error(self, problem: str) -> SubstitutionError:
        return SubstitutionError(f"bad substitution in {self.text!r}: {problem}")

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def template(self) -> list[Part]:
        parts: list[Part] = []
        buf: list[str] = []
        while self.pos < len(self.text):
            if self.peek() == "\\" and self.pos + 1 < len(self.text):  # \X is X (so \$( is a literal $()
                buf.append(self.text[self.pos + 1])
                self.pos += 2
            elif self.peek(2) == "$(":
                _flush(buf, parts)
                parts.append(self.substitution())
            else:
                buf.append(self.text[self.pos])
                self.pos += 1
        _flush(buf, parts)
        return parts

    def substitution(self) -> Substitution:
        start = self.pos
        self.pos += 2
        name_start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "_-"):
            self.pos += 1
        name = self.text[name_start:self.pos]
        if not name or not name[0].isalpha():
            raise self.error(f"expected a substitution name after '$(' at column {start + 1}")
        args: list[Template] = []
        while True:
            if self.pos >= len(self.text):
                raise self.error(f"'$({name}' is not closed with ')'")
            char = self.text[self.pos]
            if char == ")":
                self.pos += 1
                break
            if char != " ":
                raise self.error(f"unexpected {char!r} in $({name} ...)")
            while self.peek() == " ":
                self.pos += 1
            if self.peek() == ")":
                continue
            args.append(tuple(self.argument()))
        low, high = ARITY.get(name, (-1, -1))
        if low < 0:
            hint = " (ros2 launch has no $(optenv): use $(env NAME default))" if name == "optenv" else ""
            raise self.error(f"unknown substitution $({name}){hint} (supported: {', '.join(sorted(ARITY))})")
        for index, arg in enumerate(args):
            if arg == ("",) and not (name in EMPTY_DEFAULT_OK and index == 1):
                raise self.error(
                    f"empty quoted argument in $({name}): ros2 launch reads it as '[]', not as the empty string "
                    "(test for empty with $(eval \"'$(var x)' == ''\"))")
        if not low <= len(args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise self.error(f"$({name}) takes {want} argument{'s' if high != 1 else ''}, got {len(args)}")
        return Substitution(name, tuple(args))

    def argument(self) -> list[Part]:
        quote = self.peek()
        parts: list[Part] = []
        buf: list[str] = []
        if quote in ("'", '"'):
            self.pos += 1
            while True:
                if self.pos >= len(self.text):
                    raise self.error(f"unterminated {quote} quote")
                if self.peek() == "\\" and self.pos + 1 < len(self.text):
                    buf.append(self.text[self.pos + 1])
                    self.pos += 2
                elif self.peek(2) == "$(":
                    _flush(buf, parts)
                    parts.append(self.substitution())
                elif self.peek() == quote:
                    self.pos += 1
                    break
                else:
                    buf.append(self.text[self.pos])
                    self.pos += 1
            _flush(buf, parts)
            if not parts:
                parts.append("")  # the empty quoted argument (checked by the caller)
            return parts
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if self.peek(2) == "$(":
                _flush(buf, parts)
                parts.append(self.substitution())
            elif char == "\\" and self.pos + 1 < len(self.text):
                buf.append(self.text[self.pos + 1])
                self.pos += 2
            elif char in " )":
                break
            elif char in "('\"":
                raise self.error(f"unexpected {char!r} in an unquoted argument (quote the argument)")
            else:
                buf.append(char)
                self.pos += 1
        _flush(buf, parts)
        return parts


def _flush(buf: list[str], parts: list[Part]) -> None:
    if buf:
        parts.append("".join(buf))
        buf.clear()


# -- evaluation ------------------------------------------------------------------------------------
def evaluate(template: Template, scope: Scope) -> str:
    return "".join(p if isinstance(p, str) else _perform(p, scope) for p in template)


def to_bool(value: str, what: str = "condition") -> bool:
    """A condition (``if``/``unless``): 'true'/'1' or 'false'/'0', case-insensitive, surrounding spaces
    ignored, as ros2 launch."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SubstitutionError(f"{what} {value!r} is not a boolean (use true/false or 1/0)")


def typed_bool(value: str, what: str) -> bool:
    """A boolean typed like ros2 launch types ``respawn``, ``scoped`` and ``$(not)``/``$(and)``/``$(or)``
    arguments: '1' and '0', else YAML 1.1 booleans ('true', 'True', 'yes', 'off', ...)."""
    text = {"1": "true", "0": "false"}.get(value, value)
    try:
        result = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        result = None
    if isinstance(result, bool):
        return result
    raise SubstitutionError(f"{what} {value!r} is not a boolean (use true/false or 1/0)")


def _perform(sub: Substitution, scope: Scope) -> str:
    args = [evaluate(a, scope) for a in sub.args]
    handler = _HANDLERS[sub.name]
    return handler(args, scope)


def _var(args: list[str], scope: Scope) -> str:
    if args[0] in scope.configurations:
        return scope.configurations[args[0]]
    if len(args) == 2:
        return args[1]
    known = ", ".join(sorted(scope.configurations)) or "none"
    raise SubstitutionError(f"$(var {args[0]}): no launch argument or <let> named {args[0]!r} (defined: {known})")


def _env(args: list[str], scope: Scope) -> str:
    if args[0] in scope.environment:
        return scope.environment[args[0]]
    if len(args) == 2:
        return args[1]
    raise SubstitutionError(f"$(env {args[0]}): environment variable {args[0]} is not set (give a default: $(env {args[0]} value))")


def _find_pkg_share(args: list[str], scope: Scope) -> str:
    from robot_stack.launcher.packages import package_share

    return str(package_share(args[0]))


def _find_pkg_prefix(args: list[str], scope: Scope) -> str:
    from robot_stack.launcher.packages import package_prefix

    return str(package_prefix(args[0]))


def _equals(left: str, right: str) -> bool:
    if left.lower() in TRUE_WORDS + FALSE_WORDS and right.lower() in TRUE_WORDS + FALSE_WORDS:
        return (left.lower() in TRUE_WORDS) == (right.lower() in TRUE_WORDS)
    try:
        return math.isclose(float(left), float(right))
    except ValueError:
        return left == right


def _current(scope: Scope, part: str) -> str:
    if scope.current_file is None:
        raise SubstitutionError(f"$({part}) used outside a launch file")
    return str(scope.current_file.parent if part == "dirname" else scope.current_file)


def _lower(value: bool) -> str:
    return "true" if value else "false"


_HANDLERS: dict[str, Callable[[list[str], Scope], str]] = {
    "var": _var,
    "env": _env,
    "find-pkg-share": _find_pkg_share,
    "find-pkg-prefix": _find_pkg_prefix,
    "eval": lambda a, s: str(safe_eval(a[0])),
    "not": lambda a, s: _lower(not typed_bool(a[0], "$(not) argument")),
    "and": lambda a, s: _lower(typed_bool(a[0], "$(and) argument") and typed_bool(a[1], "$(and) argument")),
    "or": lambda a, s: _lower(typed_bool(a[0], "$(or) argument") or typed_bool(a[1], "$(or) argument")),
    "equals": lambda a, s: _lower(_equals(a[0], a[1])),
    "not-equals": lambda a, s: _lower(not _equals(a[0], a[1])),
    "dirname": lambda a, s: _current(s, "dirname"),
    "filename": lambda a, s: _current(s, "filename"),
}
assert set(_HANDLERS) == set(ARITY)


# -- safe $(eval) ----------------------------------------------------------------------------------
_BINARY: Mapping[type, Callable] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: Mapping[type, Callable] = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE: Mapping[type, Callable] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_MAX_SIZE = 100_000  # longest string/sequence an expression may build


def safe_eval(expression: str) -> object:
    """Evaluate a Python expression restricted to literals, arithmetic, comparisons and boolean logic.

    Names, calls, attribute access, subscripts, comprehensions and lambdas are rejected, so
    ``__import__('os')`` or ``().__class__`` can never run.
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise SubstitutionError(f"$(eval {expression!r}): invalid expression ({err.msg})") from None
    try:
        return _eval_node(tree.body)
    except SubstitutionError as err:
        raise SubstitutionError(f"$(eval {expression!r}): {err}") from None
    except (ArithmeticError, TypeError, ValueError) as err:
        raise SubstitutionError(f"$(eval {expression!r}): {type(err).__name__}: {err}") from None


def _eval_node(node: ast.AST) -> object:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_eval_node(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval_node(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval_node(node.left), _eval_node(node.right)
        _check_size(node.op, left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.BoolOp):
        value: object = None
        for operand in node.values:
            value = _eval_node(operand)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _eval_node(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval_node(comparator)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval_node(node.body) if _eval_node(node.test) else _eval_node(node.orelse)
    what = type(node).__name__
    if isinstance(node, ast.Name):
        what = f"name {node.id!r}"
    elif isinstance(node, ast.Call):
        what = "function call"
    elif isinstance(node, ast.Attribute):
        what = "attribute access"
    raise SubstitutionError(f"{what} is not allowed (only literals, arithmetic, comparisons and and/or/not)")


def _check_size(op: ast.operator, left: object, right: object) -> None:
    if isinstance(op, ast.Pow) and isinstance(right, (int, float)) and isinstance(left, (int, float)):
        bits = abs(int(left)).bit_length() if isinstance(left, int) else 64
        if abs(right) > 1000 or bits * abs(right) > 100_000:
            raise SubstitutionError("power too large")
    if isinstance(op, ast.Mult):
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > _MAX_SIZE:
                raise SubstitutionError("result too large")
