"""The package as colcon builds it: plain and --symlink-install, then the launch files run from the install.

colcon comes from PyPI (colcon-common-extensions). After ``colcon build`` the nodes are in
``<install>/robot_stack/lib/robot_stack`` (not on PATH) and every file the nodes read is under
``<install>/robot_stack/share/robot_stack``; the launch files must run from there as they are, with
``ros2 launch`` on a full ROS install and with the install's own ``robot-stack launch`` here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for
from test_launch_supervision import Output

REPO = Path(__file__).resolve().parent.parent
COLCON = Path(sys.prefix) / "bin" / "colcon"
MODES = [  # every launch file, and the modes that change which programs run
    ["sim.launch.xml"], ["sim.launch.xml", "expert:=true", "episodes:=1"],
    ["hardware.launch.xml", "emulate:=true", "cameras:=none"],
    ["hardware.launch.xml", "front_driver:=realsense", "front_device:=017322071"],
    ["teleop.launch.xml", "device:=expert"], ["teleop.launch.xml", "sim:=false", "emulate:=true", "dataset:=d.zarr"],
    ["deploy.launch.xml", "policy:=runs/p"], ["deploy.launch.xml", "policy:=runs/p", "sim:=false", "teleop:=keyboard"],
    ["calibrate.launch.xml", "what:=intrinsics", "source:=sim"], ["calibrate.launch.xml", "what:=handeye"],
    ["calibrate.launch.xml", "what:=latency", "source:=sim"], ["calibrate.launch.xml", "what:=arm", "emulate:=true"],
    ["hil.launch.xml", "device:=expert"], ["hil.launch.xml", "sim:=false", "emulate:=true", "learner_host:=gpu"],
]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not COLCON.exists(), reason="colcon is not installed (requirements.txt)")]


def build(tmp: Path, *options: str) -> dict[str, str]:
    """colcon build into ``tmp``; the environment of a shell that sourced its setup.bash."""
    result = subprocess.run([str(COLCON), "build", *options, "--paths", str(REPO), "--build-base", str(tmp / "build"),
                             "--install-base", str(tmp / "install")], cwd=tmp, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PATH": f"{sys.prefix}/bin:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (REPO / "build").exists() and not list(REPO.glob("*.egg-info")), "colcon wrote into the source tree"
    env = subprocess.run(["bash", "-c", f"source {tmp}/install/setup.bash && env -0"], capture_output=True, text=True,
                         check=True, env=os.environ).stdout
    return dict(item.split("=", 1) for item in env.split("\0") if "=" in item)


def installed_runner(tmp: Path) -> str:
    return str(tmp / "install" / "robot_stack" / "lib" / "robot_stack" / "robot-stack")


def run_until(spawn, argv: list[str], env: dict[str, str], ready: re.Pattern[str], cwd: Path) -> str:
    """Start a launch, wait for ``ready`` in its output, Ctrl-C it; its output (exit code 0 asserted)."""
    proc = spawn(argv, env=env, cwd=cwd)
    out = Output(proc.stdout)
    wait_for(lambda: ready.search(out.text()), 90, f"{ready.pattern}; output:\n{out.text()}")
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0, out.text()
    assert "Traceback" not in out.text(), out.text()
    return out.text()


def test_plain_install_has_every_data_file_and_runs_every_launch_file(tmp_path: Path, spawn) -> None:
    env = build(tmp_path)
    share = tmp_path / "install" / "robot_stack" / "share" / "robot_stack"
    tracked = subprocess.run(["git", "ls-files", "launch", "config", "calibration"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    data = [f for f in tracked if not f.endswith(".py")]
    assert data and all((share / f).is_file() for f in data), [f for f in data if not (share / f).is_file()]
    runner = installed_runner(tmp_path)
    for mode in MODES:  # every process resolves in the install: nodes in lib/robot_stack, files in share
        result = subprocess.run([runner, "launch", "robot_stack", *mode, "--print"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (mode, result.stderr)
        argv0 = re.findall(r"argv: (\S+)", result.stdout)
        assert argv0 and all(a.startswith(str(tmp_path / "install")) for a in argv0), (mode, result.stdout)
    text = run_until(spawn, [runner, "launch", "robot_stack", "hardware.launch.xml", "emulate:=true", "cameras:=none"],
                     env, re.compile(r"servos on \S+ at [\d.]+ Hz"), tmp_path)
    assert str(share / "calibration") not in text  # the calibration file was found (no "file not found")


def test_symlink_install_runs_from_the_source_tree(tmp_path: Path, spawn) -> None:
    env = build(tmp_path, "--symlink-install")
    runner = installed_runner(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import robot_stack.drivers.servo.node as m, robot_stack.resources as r;"
                            "print(m.__file__); print(r.share_dir())"], env=env, capture_output=True, text=True, check=True)
    module, share = probe.stdout.split()
    assert module == str(REPO / "drivers" / "servo" / "node.py") and share == str(REPO), probe.stdout
    run_until(spawn, [runner, "launch", "robot_stack", "sim.launch.xml", "cameras:=none"], env,
              re.compile(r"twin: so101"), tmp_path)


@pytest.mark.skipif(shutil.which("ros2") is None, reason="the real ros2 launch is not installed (a full ROS 2 install)")
def test_ros2_launch_runs_the_installed_files(tmp_path: Path, spawn) -> None:
    env = build(tmp_path)
    env["PATH"] = os.environ["PATH"]
    run_until(spawn, ["ros2", "launch", "robot_stack", "hardware.launch.xml", "emulate:=true", "cameras:=none"], env,
              re.compile(r"servos on \S+ at [\d.]+ Hz"), tmp_path)
