"""``robot-stack profile``: check a robot profile and show the contract derived from it."""

from __future__ import annotations

import argparse

from robot_stack.cli import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "profile",
        "validate a robot profile and print its topics",
        "Load a robot profile (a name from config/robots or a YAML path), validate every field and\n"
        "print the topics, types and QoS that the twin and the hardware drivers use for it.",
    )
    p.add_argument("robot", help="profile name (so101, panda) or path to a profile YAML")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from robot_stack.contract import Contract, Service, Topic
    from robot_stack.profile import load_profile

    profile = load_profile(args.robot)
    contract = Contract(profile)
    console = Console()
    console.print(f"[bold]{profile.name}[/] ({profile.source}): {len(profile.joints)} joints, "
                  f"gripper {'yes' if profile.gripper else 'no'}, cameras {', '.join(profile.camera_names) or 'none'}, "
                  f"control {profile.control.rate_hz:g} Hz")
    table = Table("name", "type", "QoS")
    items = [v for v in vars(contract).values() if isinstance(v, (Topic, Service))]
    items += list(contract.episode_services.values())
    for cam in contract.cameras.values():
        items += [t for t in (cam.image, cam.info, cam.depth, cam.depth_info) if t is not None]
    for item in items:
        t = item.type
        kind = f"{t.__module__.split('.')[0]}/{t.__name__}"
        qos = ""
        if isinstance(item, Topic):
            qos = f"{item.qos.reliability.name.lower()}, depth {item.qos.depth}" + (
                ", latched" if item.qos.durability.name == "TRANSIENT_LOCAL" else "")
        else:
            qos = "service"
        table.add_row(item.name, kind, qos)
    console.print(table)
    return 0
