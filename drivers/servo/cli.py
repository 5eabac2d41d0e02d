"""``robot-stack servo``: find servos on a bus and run the bus emulator."""

from __future__ import annotations

import argparse

from robot_stack.cli import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "servo", "servo-bus arms (Dynamixel, Feetech): scan a bus, emulate one")
    sub = parser.add_subparsers(dest="servo_command", metavar="<servo command>")
    scan = add_command(sub, "scan", "list the servo IDs answering on a serial port")
    scan.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyACM0")
    scan.add_argument("--protocol", choices=["feetech", "dynamixel"], default="feetech", help="bus protocol")
    scan.add_argument("--baudrate", type=int, default=1_000_000, help="bus baud rate")
    scan.add_argument("--max-id", type=int, default=20, help="highest ID to ping (each absent ID costs ~35 ms)")
    scan.set_defaults(handler=_scan)
    from robot_stack.drivers.servo import emulator  # light: heavy imports happen in its handler

    emulate = add_command(sub, "emulate", "emulate a servo bus on a pty (MuJoCo physics)", emulator.DESCRIPTION)
    emulator.add_arguments(emulate)
    emulate.set_defaults(handler=emulator.run)
    parser.set_defaults(handler=lambda _a: parser.print_help() or 0)


def _scan(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from robot_stack.drivers.servo.backend import scan

    found = scan(args.port, args.protocol, args.baudrate, range(0, args.max_id + 1))
    if not found:
        print(f"no {args.protocol} servo answered on {args.port} (IDs 0-{args.max_id} at {args.baudrate} baud): "
              "check power, protocol and baud rate")
        return 1
    table = Table(title=f"{args.protocol} servos on {args.port}")
    table.add_column("ID", justify="right")
    table.add_column("model")
    for sid, model in found.items():
        table.add_row(str(sid), model)
    Console().print(table)
    return 0
