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
from robot_stack.launcher.substitutions import Template, is_literal, parse, to_bool

CONDITIONS = ("if", "unless")
PROCESS_ATTRS = ("cwd", "launch-prefix", "output", "respawn", "respawn_delay", "on_exit")


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


def _literal_bool(element: Element, name: str, default: bool) -> bool:
    template = _sub(element, name)
    if template is None:
        return default
    if not is_literal(template):
        raise element.error(f"{name} must be a literal true/false")
    try:
        return to_bool("".join(template), name)
    except UserError as err:
        raise element.error(str(err)) from None


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
    return A.ProcessOptions(
        shutdown_on_exit=on_exit == "shutdown",
        label=_sub(element, label_attr),
        cwd=_sub(element, "cwd"),
        launch_prefix=_sub(element, "launch-prefix"),
        output=_sub(element, "output"),
        respawn=_sub(element, "respawn"),
        respawn_delay=_sub(element, "respawn_delay"),
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
    return A.Group(**_base(e), scoped=_literal_bool(e, "scoped", True), forwarding=_literal_bool(e, "forwarding", True),
                   actions=[parse_action(c) for c in e.children])


def _include(e: Element) -> A.Action:
    _check(e, ("file",), CONDITIONS, children=("arg",))
    args = []
    for child in e.children:
        _check(child, ("name", "value"), ())
        args.append((_req(child, "name"), _req(child, "value")))
    return A.Include(**_base(e), file=_req(e, "file"), args=args)


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
    _check(e, ("name", "value"), ())
    return A.Param(element=e, name=_req(e, "name"), value=_req(e, "value"))


_BUILDERS: dict[str, Callable[[Element], A.Action]] = {
    "arg": _arg,
    "let": _let,
    "include": _include,
    "group": _group,
    "push_ros_namespace": _push_ros_namespace,
    "node": _node,
    "executable": _executable,
    "set_env": _set_env,
    "unset_env": _unset_env,
}
