"""Signals and deaths: bursts of SIGINT/SIGTERM stop nodes cleanly, and a runner killed with SIGKILL
leaves no process behind and the arm holding."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
from conftest import wait_for
from test_launch_supervision import ROBOT_STACK, Output, alive

from robot_stack.resources import ros_environment

DRIVER_UP = re.compile(r"servos on \S+ at [\d.]+ Hz")  # the servo driver's ready line
BURSTS = [
    (signal.SIGINT, signal.SIGINT),  # a terminal's Ctrl-C and the launcher's SIGINT
    (signal.SIGTERM, signal.SIGTERM, signal.SIGTERM),  # a dying launcher, repeated
    (signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGTERM),
]


def started_pids(out: Output) -> list[int]:
    return [int(p) for p in re.findall(r"process started with pid \[(\d+)\]", out.text())]


def test_a_node_stops_cleanly_under_any_burst_of_signals(spawn) -> None:
    """Signal handlers that only record: never a deadlock in rclpy's context lock, never a
    KeyboardInterrupt traceback, never exit code -2/-15 (the twin hung or crashed in 6 of 9 before)."""
    twin = str(Path(sys.prefix) / "bin" / "twin_node")
    for round_, burst in enumerate(BURSTS):
        proc = spawn([twin, "--ros-args", "-p", "cameras:=none", "-p", "realtime_factor:=0.0"], env=ros_environment())
        out = Output(proc.stdout)
        wait_for(lambda: "twin: so101" in out.text(), 60, "the twin up")
        time.sleep(0.3)
        for sig in burst:
            os.kill(proc.pid, sig)
            time.sleep(0.01 * round_)
        assert proc.wait(timeout=20) == 0, (burst, out.text()[-2000:])
        assert "Traceback" not in out.text(), out.text()[-2000:]


def test_a_runner_killed_with_sigkill_leaves_nothing_behind(spawn, tmp_path: Path) -> None:
    """A node, a shell's grandchild and a process that ignores SIGINT and SIGTERM: all gone after the
    runner's SIGKILL (its watchdog sends SIGTERM, then SIGKILL after the two grace periods)."""
    path = tmp_path / "kill.launch.xml"
    path.write_text(
        "<launch>\n"
        '  <node pkg="robot_stack" exec="topic_probe" name="probe"/>\n'
        "  <executable cmd=\"sh -c 'sleep 300 &amp; wait'\" name=\"shell\"/>\n"
        "  <executable cmd=\"sh -c 'trap &quot;&quot; INT TERM; echo stubborn; sleep 300'\" name=\"stubborn\"/>\n"
        "</launch>\n")
    for _ in range(2):
        runner = spawn([ROBOT_STACK, "launch", str(path), "--sigint-timeout", "0.5", "--sigterm-timeout", "0.5"])
        out = Output(runner.stdout)
        wait_for(lambda: "[stubborn-3] stubborn" in out.text() and "[topic_probe-1] [INFO]" in out.text(), 60,
                 f"the launch up; output:\n{out.text()}")
        pids = started_pids(out)
        groups = {int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) in pids}
        assert len(groups) > len(pids)  # the shell's sleep is in there too
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        wait_for(lambda: not any(alive(p) for p in groups), 15, f"every process of {sorted(groups)} gone")
        assert "stopping them (SIGTERM, SIGKILL after 1 s)" in out.text()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_a_dying_runner_leaves_the_arm_holding(spawn, tmp_path: Path) -> None:
    """The hardware launch on an emulated bus that outlives it: the runner's SIGKILL stops the driver
    (SIGTERM, a clean stop) and every servo keeps its torque and position (so101: on_stale hold)."""
    from robot_stack.drivers.servo.testing import read_status, start_emulator

    status = tmp_path / "status.json"
    emulator, port = start_emulator("so101", status_file=status, popen=spawn)
    runner = spawn([ROBOT_STACK, "launch", "robot_stack", "hardware.launch.xml", "cameras:=none", f"port:={port}"])
    out = Output(runner.stdout)
    wait_for(lambda: DRIVER_UP.search(out.text()), 60, f"the driver up; output:\n{out.text()}")
    time.sleep(1.0)
    driver = started_pids(out)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    wait_for(lambda: not any(alive(p) for p in driver), 15, "the driver gone")
    time.sleep(0.5)
    first = read_status(status)
    time.sleep(1.0)
    later = read_status(status)
    assert all(v == 1 for v in later["torque"].values()), later["torque"]
    drift = np.abs(np.array(later["joint_positions"]) - np.array(first["joint_positions"]))
    assert drift.max() < 0.02, drift
    assert emulator.poll() is None


def test_a_burst_of_signals_to_the_runner_is_one_clean_stop(spawn) -> None:
    """SIGINT, SIGTERM, SIGINT to the runner: one shutdown; the later signals are reported and ignored
    (as ros2 launch ignores a second Ctrl-C), so the nodes still stop cleanly with exit code 0."""
    runner = spawn([ROBOT_STACK, "launch", "robot_stack", "hardware.launch.xml", "emulate:=true", "cameras:=none"])
    out = Output(runner.stdout)
    wait_for(lambda: DRIVER_UP.search(out.text()), 60, f"the driver up; output:\n{out.text()}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
        os.kill(runner.pid, sig)
    assert runner.wait(timeout=30) == 0, out.text()
    wait_for(lambda: "received again while stopping, ignored" in out.text(), 5, "the note")
    finished = re.findall(r"process has finished \[pid \d+, exit code (-?\d+)\]", out.text())
    assert finished == ["0", "0"], out.text()
    assert "Traceback" not in out.text()
