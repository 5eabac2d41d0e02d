"""Read a launch XML file into :class:`Element` trees that remember their file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from robot_stack.errors import UserError


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    file: Path
    line: int
    children: list[Element] = field(default_factory=list)

    def error(self, problem: str) -> UserError:
        """The one-line error for this element: ``<file>:<line>: <tag>: <problem>``."""
        return UserError(f"{self.file}:{self.line}: <{self.tag}>: {problem}")


def read(path: Path) -> Element:
    """Parse ``path``; XML syntax errors and text content become one-line errors with the line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: launch file not found") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    parser = expat.ParserCreate()
    stack: list[Element] = []
    roots: list[Element] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = Element(tag, dict(attrs), path, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if data.strip() and stack:
            raise stack[-1].error(f"unexpected text {data.strip()[:40]!r} (values go in attributes)")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as err:
        raise UserError(f"{path}:{err.lineno}: invalid XML ({expat.errors.messages[err.code]})") from None
    root = roots[0]
    if root.tag != "launch":
        raise root.error("the root element must be <launch>")
    return root
