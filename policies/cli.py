"""``robot-stack train <policy>``: one command group for every policy's training entry point."""

from __future__ import annotations

import argparse
import importlib

from robot_stack.cli import add_command

POLICY_MODULES = [
    "robot_stack.policies.diffusion.cli",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "train", "train a policy from recorded episodes",
                    "Train a policy from zarr episode stores. Run 'robot-stack train <policy> --help'.")
    p.set_defaults(handler=lambda _args: (p.print_help(), 2)[1])
    policies = p.add_subparsers(dest="policy", metavar="<policy>")
    for name in POLICY_MODULES:
        importlib.import_module(name).register(policies)
