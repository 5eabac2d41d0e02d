"""``robot-stack launch``: run a ROS 2 XML launch file (the subset in docs/launch.md)."""

from __future__ import annotations

import argparse
import signal
import sys

from robot_stack.cli import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "launch",
        "run a ROS 2 XML launch file (like ros2 launch)",
        "Run a standard ROS 2 XML launch file without the launch/launch_ros packages: the same argv,\n"
        "namespaces, remaps and parameter files that 'ros2 launch' produces, output prefixed with\n"
        "[name-N], respawn, and Ctrl-C or SIGTERM stopping every process (SIGINT, then SIGTERM, then\n"
        "SIGKILL); if the runner itself is killed, its processes are stopped all the same.\n"
        "Processes get the shipped Fast DDS profile (shared memory and loopback UDP: this host only;\n"
        "ROS_STATIC_PEERS=host names other machines) unless FASTDDS_DEFAULT_PROFILES_FILE is set.\n"
        "Exit code: 0, 1 if a process exited non-zero (and is not respawned), 2 for a bad launch file.\n\n"
        "examples:\n"
        "  robot-stack launch sim.launch.xml robot:=so101                   # a launch file of robot_stack\n"
        "  robot-stack launch robot_stack hardware.launch.xml emulate:=true # PACKAGE FILE, as ros2 launch\n"
        "  robot-stack launch teleop.launch.xml --show-args                 # list arguments\n"
        "  robot-stack launch path/to/file.launch.xml robot:=panda --print  # dry run: argv + env",
    )
    _add_arguments(p, argparse.REMAINDER)
    p.set_defaults(handler=_run, _parser=p)


def _add_arguments(p: argparse.ArgumentParser, nargs: str) -> None:
    p.add_argument("target", nargs=nargs, metavar="FILE | PACKAGE FILE | name:=value",
                   help="a launch file path, or a package and a launch file name, then launch arguments")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-s", "--show-args", action="store_true", help="list the launch arguments and exit")
    mode.add_argument("-p", "--print", dest="dry_run", action="store_true",
                      help="print each process's argv and environment changes without starting anything")
    mode.add_argument("--sros2", metavar="KEYSTORE", default=None,
                      help="print the 'ros2 security' commands that make KEYSTORE with one enclave per node of "
                           "this launch (for a full ROS 2 install: the PyPI Fast DDS has no security plugins)")
    p.add_argument("--sigint-timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait after SIGINT before SIGTERM on shutdown")
    p.add_argument("--sigterm-timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait after SIGTERM before SIGKILL on shutdown")


def _reparse(args: argparse.Namespace) -> argparse.Namespace:
    """Options may follow the file and name:=value arguments (argparse stops at the first positional)."""
    parser = argparse.ArgumentParser(prog=args._parser.prog, description=args._parser.description,
                                     formatter_class=args._parser.formatter_class)
    _add_arguments(parser, "+")
    leading = {k: v for k, v in vars(args).items()
               if k in ("show_args", "dry_run", "sros2", "sigint_timeout", "sigterm_timeout")}
    parsed = parser.parse_intermixed_args(args.target)
    for key, value in leading.items():
        if value != parser.get_default(key):
            setattr(parsed, key, value)
    if sum(map(bool, (parsed.show_args, parsed.dry_run, parsed.sros2))) > 1:
        parser.error("--show-args, --print and --sros2 cannot be combined")
    return parsed


def _refuse_security_without_plugins() -> None:
    """ROS_SECURITY_ENABLE=true with the PyPI Fast DDS: nodes fail to start (with a keystore) or run
    unsecured (without one, in the Permissive strategy); neither is what was asked, so say why at once."""
    import importlib.metadata
    import os

    from robot_stack.errors import UserError

    if os.environ.get("ROS_SECURITY_ENABLE", "").lower() != "true":
        return
    try:
        version = importlib.metadata.version("ros-fastdds")
    except importlib.metadata.PackageNotFoundError:
        return  # a full ROS install: SROS2 can work there
    raise UserError(f"ROS_SECURITY_ENABLE=true, but the Fast DDS of the PyPI wheels (ros-fastdds {version}) has no "
                    "security plugins: nodes would fail to start with a keystore and run unsecured without one. "
                    "Unset it; SROS2 needs a full ROS 2 install (docs/launch.md)")


def _run(args: argparse.Namespace) -> int:
    from robot_stack.errors import UserError
    from robot_stack.launcher.runner import (LaunchRunner, format_plan, parse_cli_args, resolve_launch_file,
                                             sros2_commands, warn)
    from robot_stack.node import StopSignals

    if not args.target:
        args._parser.error("give a launch file (FILE or PACKAGE FILE)")
    args = _reparse(args)
    positional = [t for t in args.target if ":=" not in t]
    if len(positional) not in (1, 2) or any(":=" not in t for t in args.target[len(positional):]):
        raise UserError("expected FILE or PACKAGE FILE, then name:=value arguments")
    path = resolve_launch_file(*positional)
    if not (args.show_args or args.dry_run or args.sros2):
        _refuse_security_without_plugins()
    runner = LaunchRunner(path, parse_cli_args(args.target[len(positional):]),
                          sigint_timeout=args.sigint_timeout, sigterm_timeout=args.sigterm_timeout)
    if args.show_args:
        infos = runner.declared_args()
        if not infos:
            print("No arguments.")
        else:
            print("Arguments (pass arguments as '<name>:=<value>'):\n")
        for info in infos:
            print(f"    '{info.name}':{'  (conditional)' if info.conditional else ''}")
            print(f"        {info.description or 'no description given'}")
            print(f"        (default: {info.default!r})" if info.default is not None else "        (required)")
            print()
        return 0
    for line in runner.undeclared_warnings():
        warn(line)
    if args.dry_run:
        specs = runner.plan()
        print(format_plan(specs, runner.messages))
        return 0
    if args.sros2:
        print(sros2_commands(runner.plan(), args.sros2, path.name))
        return 0

    # Signals are only recorded by the handler and acted on here, outside it: a burst of them can
    # neither re-enter the supervisor's locks nor skip the processes' clean stop.
    stop = StopSignals()
    runner.start()
    supervisor = runner.supervisor
    assert supervisor is not None
    handled = 0
    code = None
    while code is None:
        stop.wait(0.2)
        received = stop.received[handled:]
        handled += len(received)
        if received and handled == len(received):
            supervisor.shutdown(f"{signal.Signals(received[0]).name} received")
            received = received[1:]
        for signum in received:  # as ros2 launch: signals after the first do not cut the stop short
            supervisor.note(f"{signal.Signals(signum).name} received again while stopping, ignored "
                            f"(SIGTERM after {args.sigint_timeout:g} s, SIGKILL {args.sigterm_timeout:g} s later)")
        code = runner.wait(0)
    if supervisor.failure is not None:
        print(f"robot-stack launch: {supervisor.failure_summary()}; stopped the launch", file=sys.stderr)
    return code
