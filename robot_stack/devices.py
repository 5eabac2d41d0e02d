"""Torch devices from user-facing names, in one place for every learner and policy.

``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` (this process's local rank
under DDP) or ``cuda:<n>``. A name that is none of these, or a GPU torch cannot see, is a one-line
``UserError`` naming the option it came from.
"""

from __future__ import annotations

import re
from typing import Any

from robot_stack.errors import UserError

DEVICE_NAMES = "auto, cpu, cuda or cuda:<n>"


def check_device_name(name: Any) -> str:
    """``name`` if it is a device name, else ValueError (for config validation, before torch is imported)."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError(f"device {name!r}: use {DEVICE_NAMES}")
    return name


def resolve_device(name: Any, local_rank: int = 0, what: str = "--device", cpu: str = "--device cpu"):
    """A torch.device; ``what`` names the option in errors, ``cpu`` says how to ask for the CPU instead."""
    import torch

    if isinstance(name, torch.device):
        return name
    try:
        name = check_device_name(name)
    except ValueError:
        raise UserError(f"{what} {name!r}: use {DEVICE_NAMES}") from None
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"{what} {name}: no CUDA GPU visible to torch (use {cpu})")
        count = torch.cuda.device_count()
        if name != "cuda" and int(name.split(":")[1]) >= count:
            raise UserError(f"{what} {name}: torch sees {count} CUDA GPU{'s' if count > 1 else ''} "
                            f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    return torch.device("cpu")


def process_count(value: str, option: str, what: str) -> int | None:
    """A ``--procs``-style option: the positive number given, or None for ``auto`` (the caller decides);
    anything else is a one-line error naming ``option`` and ``what`` it counts."""
    if value == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"{option} {value!r}: give a number of {what} (1, 2, ...) or auto")
    return n


def cpu_processes() -> int:
    """``auto`` on a CPU: 2 processes with 2+ cores (their work leaves a core idle or uses it poorly alone), else 1."""
    import os

    return 2 if (os.cpu_count() or 1) >= 2 else 1
