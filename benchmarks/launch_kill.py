"""Kill the launch runner with SIGKILL, again and again: does anything it started live on?

Each round starts ``robot-stack launch hardware.launch.xml emulate:=true cameras:=none`` in a session
of its own (the servo-bus emulator and the real servo driver), waits until the driver reports its
servos, waits a random 0-2 s more and kills the runner alone with SIGKILL. Every process the runner
started (the pids it printed, anything in their process groups, its watchdog) must be gone within
``--grace`` seconds; one still running then is hung.

``--hold`` more rounds launch the driver alone on an emulator this benchmark runs (``port:=<pty>``),
so the bus outlives the kill: after the driver's death every servo must keep its torque on and the arm
its position (the so101 profile's ``on_stale: hold``).

    .venv/bin/python benchmarks/launch_kill.py [--rounds 30] [--hold 5] [--grace 15]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ROBOT_STACK = str(Path(sys.prefix) / "bin" / "robot-stack")
DRIVER_UP = re.compile(r"servos on \S+ at [\d.]+ Hz")  # the driver's ready line


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state[0] != "Z"


def processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z":
                out[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return out


class Launch:
    """One runner in its own session, its output read in the background."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([ROBOT_STACK, "launch", "robot_stack", "hardware.launch.xml", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, env=env, cwd=tempfile.gettempdir())
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(DRIVER_UP.search(line) for line in self.lines):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def kill_runner(self, grace: float) -> tuple[set[int], float]:
        """SIGKILL the runner alone; what it had started, and the seconds until all of it was gone
        (``grace`` at most)."""
        started = self.started()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < grace and any(alive(p) for p in started):
            time.sleep(0.05)
        return started, time.monotonic() - t0

    def started(self) -> set[int]:
        """Everything it started: printed pids, their process groups' members, its direct children."""
        pids = {int(p) for line in self.lines for p in re.findall(r"process started with pid \[(\d+)\]", line)}
        table = processes()
        pids |= {pid for pid, (ppid, pgid) in table.items() if pgid in pids or ppid == self.proc.pid}
        return pids


def kill_round(env: dict[str, str], args: list[str], grace: float, rng: random.Random) -> tuple[int, float, str]:
    """Returns (hung processes, seconds until all gone, note)."""
    launch = Launch(args, env)
    if not launch.wait_ready():
        launch.proc.kill()
        launch.proc.wait()
        return 0, float("nan"), "did not start: " + " | ".join(launch.lines[-5:])
    time.sleep(rng.uniform(0.0, 2.0))
    before, gone_after = launch.kill_runner(grace)
    hung = [p for p in before if alive(p)]
    for pid in hung:  # leave the machine clean for the next round
        os.kill(pid, signal.SIGKILL)
    return len(hung), gone_after, f"hung: {hung}" if hung else ""


def hold_round(env: dict[str, str], grace: float) -> tuple[bool, str]:
    """The driver on this benchmark's emulator: after its death the arm keeps torque and position."""
    from robot_stack.drivers.servo.testing import read_status, start_emulator

    with tempfile.TemporaryDirectory() as tmp:
        status = Path(tmp) / "status.json"
        emulator, port = start_emulator("so101", status_file=status)
        try:
            launch = Launch(["cameras:=none", f"port:={port}"], env)
            if not launch.wait_ready():
                launch.proc.kill()
                return False, "did not start: " + " | ".join(launch.lines[-5:])
            time.sleep(1.0)
            driver, _ = launch.kill_runner(grace)
            time.sleep(0.5)
            first = read_status(status)
            time.sleep(1.0)
            later = read_status(status)
            torque_on = all(v == 1 for v in later["torque"].values())
            drift = float(np.max(np.abs(np.array(later["joint_positions"]) - np.array(first["joint_positions"]))))
            ok = torque_on and drift < 0.02 and not any(alive(p) for p in driver)
            return ok, f"torque {'on' if torque_on else 'OFF'}, drift {drift:.4f} rad over 1 s"
        finally:
            emulator.send_signal(signal.SIGINT)
            emulator.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="runner kills with emulate:=true cameras:=none")
    parser.add_argument("--hold", type=int, default=5, help="runner kills with the driver on this benchmark's emulator")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds for everything to be gone after a kill")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from robot_stack.resources import ros_environment

    env = ros_environment()
    env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("MUJOCO_GL", "egl")
    rng = random.Random(args.seed)
    hung, times, notes = 0, [], []
    for i in range(args.rounds):
        n, seconds, note = kill_round(env, ["emulate:=true", "cameras:=none"], args.grace, rng)
        hung += n
        times.append(seconds)
        print(f"  round {i + 1:2d}: all gone after {seconds:5.2f} s {note}", flush=True)
        if note:
            notes.append(note)
    holds = []
    for i in range(args.hold):
        ok, note = hold_round(env, args.grace)
        holds.append(ok)
        print(f"  hold {i + 1}: {'ok' if ok else 'FAILED'} ({note})", flush=True)
    valid = [t for t in times if t == t]
    load = os.getloadavg()
    print()
    print("| runner SIGKILLs | hung processes | all gone after, median / max (s) | arm after the driver died |")
    print("|---|---|---|---|")
    print(f"| {args.rounds} | {hung} | {np.median(valid) if valid else float('nan'):.2f} / "
          f"{max(valid) if valid else float('nan'):.2f} | holding in {sum(holds)} of {len(holds)} |")
    print(f"\nmachine: {os.cpu_count()} cores, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0 if hung == 0 and all(holds) and len(valid) == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
