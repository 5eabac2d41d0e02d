"""Turn launch XML elements into actions, rejecting anything outside the supported subset.

Every element and attribute is checked here, with its file and line, before anything runs:
unknown elements and attributes, missing required attributes and malformed substitutions are
one-line errors ``<file>:<line>: <element>: <problem>``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from robot_stack.errors import UserError
from robot_stack.launcher import actions as A
from robot_stack.launcher import document
from robot_stack.launcher.document import Element
from robot_stack.launcher.substitutions import Template, parse, typed_bool

CONDITIONS = ("if", "unless")
PROCESS_ATTRS = ("cwd", "launch-prefix", "output", "respawn", "respawn_delay", "respawn_max_retries", "on_exit")
PARAM_TYPES = ("str", "int", "float", "bool", "yaml")  # <param type>; list_of_* are not supported


def load(path: Path) -> list[A.Action]:
    """Read and check a launch file; returns its top-level actions."""
    root = document.read(path)
    _check(root, required=(), optional=("version",), children=None)
    return [parse_action(child) for child in root.children]


def parse_action(element: Element) -> A.Action:
    builder = _BUILDERS.get(element.tag)
    if builder is None:
        raise element.error(f"unknown element (supported: {', '.join(f'<{t}>' for t in _BUILDERS)})")
    return builder(element)


# -- helpers ---------------------------------------------------------------------------------------
def _check(element: Element, required: tuple[str, ...], optional: tuple[str, ...],
           children: tuple[str, ...] | None = ()) -> None:
    """Required and allowed attributes; ``children`` are the allowed child tags (None: actions)."""
    for name in required:
        if name not in element.attrs:
            raise element.error(f"missing required attribute {name!r}")
    allowed = set(required) | set(optional)
    for name in element.attrs:
        if name not in allowed:
            raise element.error(f"unknown attribute {name!r} (allowed: {', '.join(sorted(allowed)) or 'none'})")
    for child in element.children if children is not None else ():
        if child.tag not in children:
            where = f"(allowed: {', '.join(f'<{c}>' for c in children)})" if children else "(it takes no children)"
            raise child.error(f"not allowed inside <{element.tag}> {where}")


def _sub(element: Element, name: str) -> Template | None:
    if name not in element.attrs:
        return None
    try:
        return parse(element.attrs[name])
    except UserError as err:
        raise element.error(f"{name}: {err}") from None


def _req(element: Element, name: str) -> Template:
    template = _sub(element, name)
    assert template is not None  # _check made it required
    return template


def _literal(element: Element, name: str, kind: type, default: object) -> object:
    """A typed attribute that ros2 launch reads without substitutions (``data_type=`` in launch_xml)."""
    text = element.attrs.get(name)
    if text is None:
        return default
    if "$(" in text:
        raise element.error(f"{name} must be a literal {kind.__name__} (ros2 launch does not substitute it)")
    try:
        return typed_bool(text, name) if kind is bool else kind(text)
    except (UserError, ValueError):
        raise element.error(f"{name} {text!r} is not a{'n' if kind is int else ''} {kind.__name__}") from None


def _base(element: Element) -> dict:
    if "if" in element.attrs and "unless" in element.attrs:
        raise element.error("'if' and 'unless' cannot be used together")
    return {"element": element, "if_": _sub(element, "if"), "unless": _sub(element, "unless")}


def _env_children(element: Element) -> list[tuple[Template, Template]]:
    pairs = []
    for child in element.children:
        if child.tag == "env":
            _check(child, required=("name", "value"), optional=())
            pairs.append((_req(child, "name"), _req(child, "value")))
    return pairs


def _process_options(element: Element, label_attr: str) -> A.ProcessOptions:
    on_exit = element.attrs.get("on_exit")
    if on_exit is not None and on_exit != "shutdown":
        raise element.error(f"on_exit={on_exit!r}: only on_exit=\"shutdown\" is supported")
    delay = _literal(element, "respawn_delay", float, 0.0)
    if not delay >= 0.0:
        raise element.error(f"respawn_delay {delay!r} must be a number of seconds >= 0")
    return A.ProcessOptions(
        shutdown_on_exit=on_exit == "shutdown",
        label=_sub(element, label_attr),
        cwd=_sub(element, "cwd"),
        launch_prefix=_sub(element, "launch-prefix"),
        output=_sub(element, "output"),
        respawn=_sub(element, "respawn"),
        respawn_delay=delay,
        respawn_max_retries=_literal(element, "respawn_max_retries", int, -1),
        env=_env_children(element),
    )


# -- builders --------------------------------------------------------------------------------------
def _arg(e: Element) -> A.Action:
    _check(e, ("name",), ("default", "description", *CONDITIONS))
    name = e.attrs["name"]
    if not name or "$(" in name:
        raise e.error("name must be a plain, non-empty word")
    return A.Arg(**_base(e), name=name, default=_sub(e, "default"), default_text=e.attrs.get("default"),
                 description=e.attrs.get("description", ""))


def _let(e: Element) -> A.Action:
    _check(e, ("name", "value"), CONDITIONS)
    return A.Let(**_base(e), name=_req(e, "name"), value=_req(e, "value"))


def _set_env(e: Element) -> A.Action:
    _check(e, ("name", "value"), CONDITIONS)
    return A.SetEnv(**_base(e), name=_req(e, "name"), value=_req(e, "value"))


def _unset_env(e: Element) -> A.Action:
    _check(e, ("name",), CONDITIONS)
    return A.SetEnv(**_base(e), name=_req(e, "name"), value=None)


def _push_ros_namespace(e: Element) -> A.Action:
    _check(e, ("namespace",), CONDITIONS)
    return A.PushRosNamespace(**_base(e), namespace=_req(e, "namespace"))


def _group(e: Element) -> A.Action:
    _check(e, (), ("scoped", "forwarding", *CONDITIONS), children=None)
    return A.Group(**_base(e), scoped=_literal(e, "scoped", bool, True), forwarding=_literal(e, "forwarding", bool, True),
                   actions=[parse_action(c) for c in e.children])


def _include(e: Element) -> A.Action:
    _check(e, ("file",), CONDITIONS, children=("arg",))
    args = []
    for child in e.children:
        _check(child, ("name", "value"), ())
        args.append((_req(child, "name"), _req(child, "value")))
    return A.Include(**_base(e), file=_req(e, "file"), args=args)


def _log(e: Element) -> A.Action:
    _check(e, ("message",), CONDITIONS)
    return A.Log(**_base(e), message=_req(e, "message"))


def _executable(e: Element) -> A.Action:
    _check(e, ("cmd",), ("name", *PROCESS_ATTRS, *CONDITIONS), children=("env",))
    return A.Executable(**_base(e), cmd=_req(e, "cmd"), options=_process_options(e, "name"))


def _node(e: Element) -> A.Action:
    _check(e, ("exec",), ("pkg", "name", "namespace", "args", "ros_args", "exec_name", *PROCESS_ATTRS, *CONDITIONS),
           children=("param", "remap", "env"))
    params, remaps = [], []
    for child in e.children:
        if child.tag == "param":
            params.append(_param(child, top=True))
        elif child.tag == "remap":
            _check(child, ("from", "to"), ())
            remaps.append((_req(child, "from"), _req(child, "to")))
    return A.Node(**_base(e), pkg=_sub(e, "pkg"), exec=_req(e, "exec"), name=_sub(e, "name"),
                  namespace=_sub(e, "namespace"), args=_sub(e, "args"), ros_args=_sub(e, "ros_args"),
                  params=params, remaps=remaps, options=_process_options(e, "exec_name"))


def _param(e: Element, top: bool) -> A.Param:
    if "from" in e.attrs:
        if not top:
            raise e.error("'from' is only allowed on a top-level <param>")
        _check(e, ("from",), ())
        return A.Param(element=e, from_file=_req(e, "from"))
    if e.children:
        _check(e, ("name",), (), children=("param",))
        return A.Param(element=e, name=_req(e, "name"), children=[_param(c, top=False) for c in e.children])
    if "name" not in e.attrs:
        raise e.error("needs either name and value, or from=\"file.yaml\"")
    _check(e, ("name", "value"), ("type",))
    kind = e.attrs.get("type", "yaml")
    if kind not in PARAM_TYPES:
        raise e.error(f"type {kind!r} is not supported (use {', '.join(PARAM_TYPES)}; for a list, a YAML list value)")
    return A.Param(element=e, name=_req(e, "name"), value=_req(e, "value"), type=kind)


_BUILDERS: dict[str, Callable[[Element], A.Action]] = {
    "arg": _arg,
    "let": _let,
    "include": _include,
    "group": _group,
    "push_ros_namespace": _push_ros_namespace,
    "node": _node,
    "executable": _executable,
    "set_env": _set_env,
    "log": _log,
    "unset_env": _unset_env,
}
