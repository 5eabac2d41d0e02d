"""Launch actions and how they evaluate into a plan of processes.

Evaluation follows ``ros2 launch``: actions run in document order against launch configurations
(arguments and ``<let>``), the launch environment and the pushed ROS namespace; ``<group>`` saves and
restores them when ``scoped`` (the default) and starts from a clean slate when ``forwarding`` is
false; ``<include>`` sets its ``<arg>`` children in the current scope and is not scoped. The whole
plan is evaluated before any process starts, so every error surfaces first.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from robot_stack.errors import UserError
from robot_stack.launcher.document import Element
from robot_stack.launcher.substitutions import Scope, Template, evaluate, to_bool, typed_bool


@dataclass
class ProcessSpec:
    """One process to run: exactly what ``ros2 launch`` would execute."""

    label: str  # output prefix, e.g. "topic_probe-1"
    argv: list[str]
    env: dict[str, str]
    env_changes: dict[str, str | None]  # relative to the runner's own environment
    cwd: str | None
    respawn: bool
    respawn_delay: float
    node_name: str | None  # fully qualified node name when the name is given (namespace "/" if none)
    source: str  # "<file>:<line>"
    shutdown_on_exit: bool = False  # on_exit="shutdown": its exit ends the launch
    respawn_max_retries: int = -1  # respawns allowed (negative: no limit, as ros2 launch)


@dataclass
class Context:
    scope: Scope
    base_environment: dict[str, str]  # what <group forwarding="false"> resets the environment to
    include_reader: Callable[[Path], list[Action]]
    processes: list[ProcessSpec] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # <log message>s, in document order
    include_stack: list[Path] = field(default_factory=list)
    params_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / f"robot_stack_launch_{os.getuid()}")

    def next_label(self, base: str) -> str:
        return f"{base}-{len(self.processes) + 1}"


@dataclass
class Action:
    element: Element
    if_: Template | None = None
    unless: Template | None = None

    def run(self, ctx: Context) -> None:
        if self.enabled(ctx):
            self.execute(ctx)

    def enabled(self, ctx: Context) -> bool:
        if self.if_ is not None and not self.flag(self.if_, ctx, "if"):
            return False
        return not (self.unless is not None and self.flag(self.unless, ctx, "unless"))

    def execute(self, ctx: Context) -> None:
        raise NotImplementedError

    def flag(self, template: Template, ctx: Context, what: str, convert: Callable[[str, str], bool] = to_bool) -> bool:
        value = self.eval(template, ctx)
        try:
            return convert(value, what)
        except UserError as err:
            raise self.element.error(str(err)) from None

    def split(self, template: Template, ctx: Context) -> list[str]:
        try:
            return split_cmdline(template, lambda t: evaluate(t, ctx.scope))
        except UserError as err:
            raise self.element.error(str(err)) from None

    def eval(self, template: Template, ctx: Context) -> str:
        try:
            return evaluate(template, ctx.scope)
        except UserError as err:
            raise self.element.error(str(err)) from None


def run_all(actions: list[Action], ctx: Context) -> None:
    for action in actions:
        action.run(ctx)


@dataclass
class Arg(Action):
    name: str = ""
    default: Template | None = None
    default_text: str | None = None
    description: str = ""

    def execute(self, ctx: Context) -> None:
        if self.name in ctx.scope.configurations:
            return
        if self.default is None:
            raise self.element.error(
                f"missing required argument {self.name!r}"
                + (f" ({self.description})" if self.description else "")
                + f"; pass {self.name}:=<value>"
            )
        ctx.scope.configurations[self.name] = self.eval(self.default, ctx)


@dataclass
class Let(Action):
    name: Template = ()
    value: Template = ()

    def execute(self, ctx: Context) -> None:
        ctx.scope.configurations[self.eval(self.name, ctx)] = self.eval(self.value, ctx)


@dataclass
class SetEnv(Action):
    name: Template = ()
    value: Template | None = None  # None: unset

    def execute(self, ctx: Context) -> None:
        name = self.eval(self.name, ctx)
        if self.value is None:
            ctx.scope.environment.pop(name, None)
        else:
            ctx.scope.environment[name] = self.eval(self.value, ctx)


@dataclass
class Log(Action):
    message: Template = ()

    def execute(self, ctx: Context) -> None:
        ctx.messages.append(self.eval(self.message, ctx))


@dataclass
class PushRosNamespace(Action):
    namespace: Template = ()

    def execute(self, ctx: Context) -> None:
        pushed = self.eval(self.namespace, ctx).strip()
        if pushed:
            ctx.scope.ros_namespace = absolute_namespace(prefix_namespace(ctx.scope.ros_namespace or None, pushed))
            _validate_namespace(self.element, ctx.scope.ros_namespace)


@dataclass
class Group(Action):
    scoped: bool = True
    forwarding: bool = True
    actions: list[Action] = field(default_factory=list)

    def execute(self, ctx: Context) -> None:
        scope = ctx.scope
        saved = (dict(scope.configurations), dict(scope.environment), scope.ros_namespace)
        if self.scoped and not self.forwarding:
            scope.configurations = {}
            scope.environment = dict(ctx.base_environment)
            scope.ros_namespace = ""
        try:
            run_all(self.actions, ctx)
        finally:
            if self.scoped:
                scope.configurations, scope.environment, scope.ros_namespace = saved


@dataclass
class Include(Action):
    file: Template = ()
    args: list[tuple[Template, Template]] = field(default_factory=list)

    def execute(self, ctx: Context) -> None:
        text = self.eval(self.file, ctx)
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.is_file():
            hint = " (relative paths are relative to the working directory, as in ros2 launch: use $(dirname)/...)" \
                if not Path(text).is_absolute() else ""
            raise self.element.error(f"included file {text!r} not found{hint}")
        for name, value in self.args:
            ctx.scope.configurations[self.eval(name, ctx)] = self.eval(value, ctx)
        path = path.resolve()
        if path in ctx.include_stack:
            raise self.element.error(f"{path.name} includes itself (through {' -> '.join(p.name for p in ctx.include_stack)})")
        actions = ctx.include_reader(path)
        previous = ctx.scope.current_file
        ctx.scope.current_file = path
        ctx.include_stack.append(path)
        try:
            run_all(actions, ctx)
        finally:
            ctx.scope.current_file = previous
            ctx.include_stack.pop()


# -- processes -------------------------------------------------------------------------------------
@dataclass
class ProcessOptions:
    """What <node> and <executable> share (the ExecuteProcess attributes)."""

    label: Template | None = None  # <executable name>, <node exec_name>
    cwd: Template | None = None
    launch_prefix: Template | None = None
    output: Template | None = None
    respawn: Template | None = None
    respawn_delay: float = 0.0
    respawn_max_retries: int = -1
    shutdown_on_exit: bool = False  # on_exit="shutdown"
    env: list[tuple[Template, Template]] = field(default_factory=list)


@dataclass
class Executable(Action):
    cmd: Template = ()
    options: ProcessOptions = field(default_factory=ProcessOptions)

    def execute(self, ctx: Context) -> None:
        argv = self.split(self.cmd, ctx)
        if not argv:
            raise self.element.error("cmd is empty")
        ctx.processes.append(make_process(self, ctx, argv, node_name=None))


@dataclass
class Param:
    """An inline ``<param name value>`` (possibly nested) or a ``<param from="file.yaml">``."""

    element: Element
    name: Template | None = None
    value: Template | None = None
    children: list[Param] = field(default_factory=list)
    from_file: Template | None = None
    type: str = "yaml"  # <param type>: str, int, float, bool or yaml (typed by YAML rules)


@dataclass
class Node(Action):
    pkg: Template | None = None
    exec: Template = ()
    name: Template | None = None
    namespace: Template | None = None
    args: Template | None = None
    ros_args: Template | None = None
    params: list[Param] = field(default_factory=list)
    remaps: list[tuple[Template, Template]] = field(default_factory=list)
    options: ProcessOptions = field(default_factory=ProcessOptions)

    def execute(self, ctx: Context) -> None:
        from robot_stack.launcher.packages import find_executable

        ev = lambda t: self.eval(t, ctx)  # noqa: E731
        executable = ev(self.exec)
        if self.pkg is not None:
            try:
                executable = str(find_executable(ev(self.pkg), executable))
            except UserError as err:
                raise self.element.error(str(err)) from None
        argv = [executable]
        if self.args is not None:
            argv += self.split(self.args, ctx)
        if self.ros_args is not None:
            argv += ["--ros-args", *self.split(self.ros_args, ctx)]
        argv.append("--ros-args")
        name = ev(self.name) if self.name is not None else None
        if name is not None:
            _validate_node_name(self.element, name)
            argv += ["-r", f"__node:={name}"]
        namespace = absolute_namespace(prefix_namespace(
            ctx.scope.ros_namespace or None, ev(self.namespace) if self.namespace is not None else None))
        if namespace is not None:
            _validate_namespace(self.element, namespace)
            argv += ["-r", f"__ns:={namespace}"]
        full_name = prefix_namespace(namespace, name) if name is not None and namespace is not None else None
        for param in self.params:
            argv += ["--params-file", self._params_file(param, full_name, ctx)]
        for source, target in self.remaps:
            argv += ["-r", f"{ev(source)}:={ev(target)}"]
        # the node's name as the graph shows it (a node given no namespace is in "/")
        shown = prefix_namespace(namespace or "/", name) if name is not None else None
        ctx.processes.append(make_process(self, ctx, argv, node_name=shown))

    def _params_file(self, param: Param, full_name: str | None, ctx: Context) -> str:
        if param.from_file is not None:
            text = self.eval(param.from_file, ctx)
            path = Path(text).expanduser()
            if not path.is_file():
                raise param.element.error(f"parameter file {text!r} not found")
            return str(path.resolve())
        values = _inline_params([param], lambda t: self.eval(t, ctx))
        document = {full_name or "/**": {"ros__parameters": values}}
        text = yaml.safe_dump(document, default_flow_style=False)
        return str(_write_content_addressed(ctx.params_dir, text))


def _inline_params(params: list[Param], ev: Callable[[Template], str]) -> dict:
    out: dict = {}
    for param in params:
        name = ev(param.name or ())
        if param.children:
            out[name] = _inline_params(param.children, ev)
            continue
        try:
            out[name] = typed_param(ev(param.value or ()), param.type)
        except (ValueError, UserError) as err:
            raise param.element.error(f"parameter {name!r}: {err}") from None
    return out


def typed_param(text: str, kind: str) -> object:
    """A ``<param value type>`` converted as launch_ros converts it (launch's ``coerce_to_type``)."""
    if kind == "str":
        return text
    if kind in ("int", "float"):
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {'an int' if kind == 'int' else 'a float'}") from None
    if kind == "bool":
        return typed_bool(text, "value")
    return yaml_typed(text)


def yaml_typed(text: str) -> object:
    """A parameter value typed like launch_ros does: YAML scalars, or uniform lists of them."""
    try:
        value = yaml.safe_load(text if text else "''")
    except yaml.YAMLError:
        raise ValueError(f"cannot parse {text!r} as YAML (quote strings: value=\"'...'\")") from None
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and value and all(type(v) is type(value[0]) for v in value) \
            and isinstance(value[0], (bool, int, float, str)):
        return value
    raise ValueError(f"{text!r} is not a bool, int, float, string or a non-empty list of one of those")


def _write_content_addressed(folder: Path, text: str) -> Path:
    """Write ``text`` to ``<folder>/params_<sha>.yaml`` (same content, same path: dry runs print real paths)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or folder.is_symlink():
        raise UserError(f"{folder} must be a directory owned by you with mode 700 (remove it and retry)")
    path = folder / f"params_{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def make_process(action: Executable | Node, ctx: Context, argv: list[str], node_name: str | None) -> ProcessSpec:
    opts = action.options
    ev = lambda t: action.eval(t, ctx)  # noqa: E731
    if opts.launch_prefix is not None:
        argv = action.split(opts.launch_prefix, ctx) + argv
    output = ev(opts.output) if opts.output is not None else "screen"
    if output not in ("screen", "log", "both"):
        raise action.element.error(f"output {output!r} must be screen, log or both")
    respawn = action.flag(opts.respawn, ctx, "respawn", typed_bool) if opts.respawn is not None else False
    env = dict(ctx.scope.environment)
    for name, value in opts.env:
        env[ev(name)] = ev(value)
    cwd = ev(opts.cwd) if opts.cwd is not None else None
    if cwd is not None and not Path(cwd).is_dir():
        raise action.element.error(f"cwd {cwd!r} is not a directory")
    if os.sep not in argv[0] and shutil.which(argv[0], path=env.get("PATH", os.defpath)) is None:
        raise action.element.error(f"command {argv[0]!r} not found on PATH")
    if os.sep in argv[0] and not os.access(Path(cwd or ".") / argv[0], os.X_OK):
        raise action.element.error(f"{argv[0]!r} is not an executable file")
    changes: dict[str, str | None] = {k: v for k, v in env.items() if os.environ.get(k) != v}
    changes.update({k: None for k in os.environ if k not in env})
    base = ev(opts.label) if opts.label is not None else os.path.basename(argv[0])
    return ProcessSpec(
        label=ctx.next_label(base),
        argv=argv,
        env=env,
        env_changes=changes,
        cwd=cwd,
        respawn=respawn,
        respawn_delay=opts.respawn_delay,
        respawn_max_retries=opts.respawn_max_retries,
        node_name=node_name,
        source=f"{action.element.file}:{action.element.line}",
        shutdown_on_exit=opts.shutdown_on_exit,
    )


def split_cmdline(template: Template, ev: Callable[[Template], str]) -> list[str]:
    """Split a command line as ros2 launch does: literal text is split like a shell (shlex, so quotes
    work within it), substitution results are never split (a value with spaces stays one argument)."""
    args: list[str] = []
    current: list[str] = []
    pending = False  # current holds something (possibly an empty substitution result)

    def flush() -> None:
        nonlocal current, pending
        if pending:
            args.append("".join(current))
        current, pending = [], False

    for part in template:
        if not isinstance(part, str):
            current.append(ev((part,)))
            pending = True
            continue
        try:
            pieces = shlex.split(part)
        except ValueError as err:
            raise UserError(f"cannot split {part.strip()!r} ({err}; quotes cannot span a substitution)") from None
        if not pieces:
            if part:
                flush()
            continue
        if part[0].isspace():
            flush()
        current.append(pieces[0])
        pending = True
        for piece in pieces[1:]:
            flush()
            current, pending = [piece], True
        if part[-1].isspace():
            flush()
    flush()
    return args


# -- names -----------------------------------------------------------------------------------------
def prefix_namespace(base: str | None, namespace: str | None) -> str | None:
    """launch_ros's rule: an absolute namespace wins, a relative one is appended to the base."""
    if base is None:
        return namespace
    if namespace is None:
        return base
    if namespace.startswith("/"):
        return namespace
    return base.rstrip("/") + "/" + namespace


def absolute_namespace(namespace: str | None) -> str | None:
    if namespace is None:
        return None
    return namespace if namespace.startswith("/") else "/" + namespace


def _validate_node_name(element: Element, name: str) -> None:
    from rclpy.validate_node_name import validate_node_name

    try:
        validate_node_name(name)
    except Exception as err:  # noqa: BLE001 - rclpy raises its own exception types
        raise element.error(f"invalid node name {name!r}: {str(err).splitlines()[0]}") from None


def _validate_namespace(element: Element, namespace: str) -> None:
    from rclpy.validate_namespace import validate_namespace

    try:
        validate_namespace(namespace)
    except Exception as err:  # noqa: BLE001
        raise element.error(f"invalid namespace {namespace!r}: {str(err).splitlines()[0]}") from None
