"""``LaunchRunner``: plan a launch file into processes and supervise them (the Python API).

    runner = LaunchRunner("launch/demo.launch.xml", {"robot": "so101"}).start()
    ...
    code = runner.stop()          # SIGINT -> SIGTERM -> SIGKILL; 0, or 1 if a process failed

``plan()`` evaluates everything (arguments, conditions, substitutions, executables, parameter
files) without starting anything; ``start()`` raises a one-line ``UserError`` before starting any
process if the launch file has a problem.
"""

from __future__ import annotations

import difflib
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO

from robot_stack.errors import UserError
from robot_stack.launcher import actions as A
from robot_stack.launcher.parser import load
from robot_stack.launcher.substitutions import Scope
from robot_stack.launcher.supervisor import Supervisor
from robot_stack.resources import ros_environment


@dataclass(frozen=True)
class ArgInfo:
    name: str
    default: str | None
    description: str
    conditional: bool


def resolve_launch_file(file_or_package: str, file: str | None = None) -> Path:
    """A path; a bare file name of robot_stack's own launch files (``sim.launch.xml``); or
    ``<package> <file>`` looked up under the package's share directory, as ``ros2 launch`` does."""
    if file is None:
        path = Path(file_or_package).expanduser()
        if path.is_file():
            return path.resolve()
        if os.sep in file_or_package:
            raise UserError(f"{file_or_package}: launch file not found")
        from robot_stack.resources import PACKAGE

        package, file, where = PACKAGE, file_or_package, f"no file {file_or_package!r} here nor in package {PACKAGE}"
    else:
        package, where = file_or_package, f"no launch file {file!r} in package {file_or_package}"
    from robot_stack.launcher.packages import package_share

    share = package_share(package)
    direct = share / "launch" / file
    if direct.is_file():
        return direct.resolve()
    found = sorted(p for p in (share / "launch").rglob(file) if p.is_file())
    if not found:
        known = sorted(p.name for p in (share / "launch").glob("*.launch.xml"))
        stems = {name.removesuffix(".launch.xml"): name for name in known}
        close = difflib.get_close_matches(file.split(".")[0], stems, n=1)
        hint = f"did you mean {stems[close[0]]}? " if close else ""
        raise UserError(f"{where} ({hint}it has: {', '.join(known) or 'none'})")
    return found[0].resolve()


class LaunchRunner:
    def __init__(self, path: str | Path, args: Mapping[str, str] | None = None, *,
                 stdout: IO[str] | None = None, stderr: IO[str] | None = None,
                 sigint_timeout: float = 5.0, sigterm_timeout: float = 5.0, env: Mapping[str, str] | None = None) -> None:
        self.path = Path(path).resolve()
        self.args = dict(args or {})
        self.env = dict(env or {})
        """Variables set for this launch over this process's environment (``ros2 launch`` inherits the shell's),
        e.g. ``{"ROS_DOMAIN_ID": "7"}`` for a launch of its own beside another."""
        self._io = (stdout, stderr)
        self._timeouts = (sigint_timeout, sigterm_timeout)
        self.supervisor: Supervisor | None = None
        self.processes: list[A.ProcessSpec] = []
        self.messages: list[str] = []  # the <log> messages of the last plan()

    # -- planning ------------------------------------------------------------------------------------
    def plan(self) -> list[A.ProcessSpec]:
        """Every process the launch file starts with the given arguments (nothing is started)."""
        reader = cache(load)
        top = reader(self.path)
        environment = ros_environment({**os.environ, **self.env})
        scope = Scope(configurations=dict(self.args), environment=dict(environment), current_file=self.path)
        ctx = A.Context(scope=scope, base_environment=environment, include_reader=reader, include_stack=[self.path])
        A.run_all(top, ctx)
        self.processes, self.messages = ctx.processes, ctx.messages
        return ctx.processes

    def declared_args(self) -> list[ArgInfo]:
        """Arguments declared in the file (groups included, includes not), like ``ros2 launch -s``."""
        out: list[ArgInfo] = []

        def walk(actions: list[A.Action], conditional: bool) -> None:
            for action in actions:
                cond = conditional or action.if_ is not None or action.unless is not None
                if isinstance(action, A.Arg):
                    out.append(ArgInfo(action.name, action.default_text, action.description, cond))
                elif isinstance(action, A.Group):
                    walk(action.actions, cond)

        walk(load(self.path), False)
        return out

    def undeclared_args(self) -> list[str]:
        names = {a.name for a in self.declared_args()}
        return [n for n in self.args if n not in names]

    def undeclared_warnings(self) -> list[str]:
        """One line per undeclared argument, naming a declared one it looks like a typo of."""
        declared = [a.name for a in self.declared_args()]
        lines = []
        for name in self.undeclared_args():
            close = difflib.get_close_matches(name, declared, n=1, cutoff=0.6) or \
                [d for d in declared if d in name or name in d][:1]
            hint = f": did you mean `{close[0]}`?" if close else " (set anyway, as ros2 launch does)"
            lines.append(f"argument `{name}` is not declared in {self.path.name}{hint}")
        return lines

    # -- running -------------------------------------------------------------------------------------
    def start(self) -> LaunchRunner:
        specs = self.plan()
        if not specs:
            raise UserError(f"{self.path}: starts no processes with these arguments")
        out, err = self._io
        for message in self.messages:
            print(f"[INFO] [launch.user]: {message}", file=out or sys.stdout, flush=True)
        self.supervisor = Supervisor(specs, stdout=out, stderr=err, sigint_timeout=self._timeouts[0],
                                     sigterm_timeout=self._timeouts[1])
        self.supervisor.start()
        return self

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until every process has exited; the exit code (None on timeout)."""
        return self._require().wait(timeout)

    def stop(self, timeout: float | None = None) -> int | None:
        supervisor = self._require()
        supervisor.shutdown()
        return supervisor.wait(timeout)

    def pids(self) -> dict[str, list[int]]:
        return self._require().pids()

    def __enter__(self) -> LaunchRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.supervisor is not None:
            self.stop()

    def _require(self) -> Supervisor:
        if self.supervisor is None:
            raise RuntimeError("LaunchRunner.start() was not called")
        return self.supervisor


def format_plan(specs: list[A.ProcessSpec], messages: list[str] = ()) -> str:
    """The dry-run listing: the <log> messages, then each process's label, node, env changes and exact
    argv (shell-quoted)."""
    lines = [f"log: {message}" for message in messages]
    for spec in specs:
        header = f"[{spec.label}]" + (f" node {spec.node_name}" if spec.node_name else "") + f"  ({spec.source})"
        lines.append(header)
        for name, value in sorted(spec.env_changes.items()):
            lines.append(f"  env: unset {name}" if value is None else f"  env: {name}={shlex.quote(value)}")
        if spec.cwd:
            lines.append(f"  cwd: {spec.cwd}")
        if spec.respawn:
            limit = f", at most {spec.respawn_max_retries} times" if spec.respawn_max_retries >= 0 else ""
            lines.append(f"  respawn: after {spec.respawn_delay:g} s{limit}")
        lines.append("  argv: " + shlex.join(spec.argv))
    return "\n".join(lines)


def sros2_commands(specs: list[A.ProcessSpec], keystore: str, source: str) -> str:
    """The ``ros2 security`` commands for a keystore with one enclave per node (its full name)."""
    names = sorted({spec.node_name for spec in specs if spec.node_name})
    unnamed = [spec.label for spec in specs if not spec.node_name]
    ks = shlex.quote(keystore)
    lines = [
        f"# SROS2 keystore for {source}: one enclave per node. For a full ROS 2 install: the Fast DDS of the",
        "# PyPI wheels has no security plugins (with a keystore no node can start there).",
        f"ros2 security create_keystore {ks}",
        *(f"ros2 security create_enclave {ks} {name}" for name in names),
        "# then, in the environment of the launch:",
        f"#   export ROS_SECURITY_KEYSTORE={ks} ROS_SECURITY_ENABLE=true ROS_SECURITY_STRATEGY=Enforce",
        "# and each node in its enclave: ROS_SECURITY_ENCLAVE_OVERRIDE=<its enclave> (an <env> of the node)",
    ]
    if unnamed:
        lines.append(f"# not nodes (no enclave): {', '.join(unnamed)}")
    return "\n".join(lines)


def parse_cli_args(items: list[str]) -> dict[str, str]:
    args: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise UserError(f"launch argument {item!r} must look like name:=value")
        args[name] = value
    return args


def warn(message: str) -> None:
    print(f"robot-stack launch: warning: {message}", file=sys.stderr)


__all__ = ["LaunchRunner", "ArgInfo", "format_plan", "parse_cli_args", "resolve_launch_file"]
