"""``robot-stack``: one command line for the whole stack.

Each subcommand lives in its own module exposing ``register(subparsers)``; modules import heavy
libraries (torch, mujoco) inside their handlers so that ``--help`` stays instant. A handler
returns an exit code (or None for 0). ``UserError`` becomes ``robot-stack: error: <message>``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from robot_stack import __version__
from robot_stack.errors import UserError
from robot_stack.resources import apply_ros_environment

SUBCOMMAND_MODULES = [
    "robot_stack.launcher.cli",
    "robot_stack.profile_cli",
    "robot_stack.sim.cli",
    "robot_stack.sim.cell.cli",
    "robot_stack.policies.eval_cli",
    "robot_stack.demo",
    "robot_stack.data.cli",
    "robot_stack.drivers.servo.cli",
    "robot_stack.policies.cli",
    "robot_stack.calibration.cli",
    "robot_stack.policies.hil.cli",
]


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-stack",
        description=(
            "Teleoperate, record, train and deploy robot policies on one ROS 2 contract,\n"
            "on the MuJoCo twin or on hardware. Run 'robot-stack <command> --help' for details."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"robot_stack {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue  # subcommand not built yet
            raise
        module.register(subparsers)
    return parser


def add_command(subparsers: argparse._SubParsersAction, name: str, help: str, description: str = "") -> argparse.ArgumentParser:
    """Add a subcommand with the project's help formatting."""
    return subparsers.add_parser(name, help=help, description=description or help, formatter_class=_Formatter)


def without_ros_args(argv: list[str]) -> list[str]:
    """``argv`` less its ROS arguments (``--ros-args ... [--]``), which rclpy reads from ``sys.argv``.

    A launch file's ``<node>`` appends them to every command line, also to commands that are not
    nodes (``robot-stack calibrate ...``, ``servo_bus_emulator``).
    """
    out, in_ros = [], False
    for arg in argv:
        if arg == "--ros-args":
            in_ros = True
        elif in_ros and arg == "--":
            in_ros = False
        elif not in_ros:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports every command's module: Ctrl-C may come meanwhile
        args = parser.parse_args(without_ros_args(sys.argv[1:] if argv is None else argv))
        if not getattr(args, "handler", None):
            parser.print_help()
            return 0 if args.command is None else 2
        apply_ros_environment()  # before torch loads OpenMP (see ros_environment)
        code = args.handler(args)
    except UserError as err:
        print(f"robot-stack: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
