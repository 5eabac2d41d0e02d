"""Helpers for tests and benchmarks: run the emulator in its own process, make a Dynamixel profile."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from robot_stack.drivers.servo.calibration import make_calibration, save_calibration
from robot_stack.profile import load_profile
from robot_stack.resources import find_config, ros_environment

EMULATOR = [sys.executable, "-m", "robot_stack.drivers.servo.emulator"]


def dynamixel_profile(folder: Path, model: str = "xm430-w350") -> Path:
    """The SO-101 profile rebuilt on a Dynamixel bus (same MJCF), with its calibration, in ``folder``."""
    data = yaml.safe_load(find_config("robots", "so101").read_text())
    data["name"] = "so101_dxl"
    cal = folder / "so101_dxl_calibration.yaml"
    data["hardware"] = {"backend": "dynamixel", "port": "/dev/ttyUSB0", "baudrate": 1_000_000,
                        "ids": [11, 12, 13, 14, 15, 16], "models": [model] * 6, "calibration": str(cal)}
    path = folder / "so101_dxl.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    profile = load_profile(path)
    save_calibration(make_calibration(profile, zeros=[2048, 1024, 3072, 2048, 2100, 2000],
                                      directions=[-1, 1, 1, -1, 1, 1]), cal)
    return path


def start_emulator(robot: str | Path, *args: str, status_file: Path | None = None,
                   popen: Callable[..., subprocess.Popen] = subprocess.Popen,
                   timeout: float = 30.0) -> tuple[subprocess.Popen, str]:
    """Start ``servo_bus_emulator`` in its own process; returns (process, pty path)."""
    cmd = [*EMULATOR, "--robot", str(robot), *args]
    if status_file is not None:
        cmd += ["--status-file", str(status_file)]
    proc = popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ros_environment())
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    if not line or time.monotonic() > deadline:
        proc.kill()
        raise RuntimeError(f"emulator did not start: {proc.stderr.read()}")
    return proc, json.loads(line)["port"]


def read_status(path: Path) -> dict:
    return json.loads(Path(path).read_text())
