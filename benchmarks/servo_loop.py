"""Servo-bus arm loop against the emulator: achieved rate and p99 period jitter at 100 and 500 Hz.

For each protocol (Feetech STS3215 SO-101, and the SO-101 on Dynamixel XM430s) and each rate, the
servo-bus emulator runs in its own process (a pty, MuJoCo physics in real time) and this process
runs either

* ``backend``: ServoBusBackend read (one sync read) + write (one sync write) on a sleep-scheduled loop,
* ``ArmNode``: the full servo_arm_node loop (its control thread: read, joint_states + ee_pose publish,
  safety, write), beside the executor that serves its topics, as in the node.

Each figure is the median over ``--repeats`` runs. Usage:
``.venv/bin/python benchmarks/servo_loop.py [--seconds 3] [--repeats 3] [--rates 100 500]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from robot_stack.drivers.servo.backend import ServoBusBackend
from robot_stack.drivers.servo.testing import dynamixel_profile, start_emulator
from robot_stack.profile import RobotProfile, load_profile
from robot_stack.resources import apply_ros_environment


def backend_loop(profile: RobotProfile, port: str, rate: float, seconds: float) -> dict[str, float]:
    backend = ServoBusBackend(profile, port=port)
    period = 1.0 / rate
    home = np.array(profile.sim.home)
    ticks, work = [], []
    try:
        start = next_tick = time.monotonic()
        while (now := time.monotonic()) - start < seconds:
            ticks.append(now)
            reading = backend.read()
            target = home.copy()
            target[0] += 0.3 * np.sin(now - start)
            backend.write(target)
            work.append(time.monotonic() - now)
            next_tick += period
            if next_tick < time.monotonic():  # overran: start the next period now
                next_tick = time.monotonic()
            time.sleep(max(0.0, next_tick - time.monotonic()))
        stats = _stats(np.diff(ticks), period)
        stats["io_p50_ms"] = float(np.median(work) * 1e3)
        stats["io_p99_ms"] = float(np.percentile(work, 99) * 1e3)
        stats["retries"] = backend.stats.retries
        assert np.all(np.isfinite(reading.position))
        return stats
    finally:
        backend.close()


def node_loop(profile: RobotProfile, port: str, rate: float, seconds: float) -> dict[str, float]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from robot_stack.arm.node import ArmNode

    profile = dataclasses.replace(profile, control=dataclasses.replace(profile.control, rate_hz=rate))
    context = rclpy.Context()
    rclpy.init(context=context)
    backend = ServoBusBackend(profile, port=port)
    node = ArmNode(profile, backend, node_name="servo_arm_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
        stats = _stats(node.loop_stats.periods, 1.0 / rate)
        stats["retries"] = backend.stats.retries
        return stats
    finally:
        executor.shutdown()
        node.close()
        node.destroy_node()
        context.try_shutdown()


def _stats(periods: np.ndarray, period: float) -> dict[str, float]:
    periods = periods[1:]  # the first period includes start-up
    return {
        "rate_hz": float(len(periods) / periods.sum()),
        "period_p50_ms": float(np.median(periods) * 1e3),
        "jitter_p99_ms": float(np.percentile(np.abs(periods - period), 99) * 1e3),
        "missed": int(np.sum(periods > 1.5 * period)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (median reported)")
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 500.0], help="loop rates, Hz")
    args = parser.parse_args()
    apply_ros_environment()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"servo_arm loop against servo_bus_emulator: median of {args.repeats} runs of {args.seconds:g} s "
                        "(achieved = ticks/s; jitter = |period - nominal|; missed = periods > 1.5x nominal)")
    for col in ("bus", "loop", "target Hz", "achieved Hz", "period p50 ms", "jitter p99 ms", "missed",
                "sync r+w p50/p99 ms", "retries"):
        table.add_column(col, justify="right" if col not in ("bus", "loop") else "left")
    with tempfile.TemporaryDirectory() as tmp:
        robots = {"feetech sts3215": "so101", "dynamixel xm430": str(dynamixel_profile(Path(tmp)))}
        for bus, robot in robots.items():
            profile = load_profile(robot)
            proc, port = start_emulator(robot)
            try:
                for loop, fn in (("backend", backend_loop), ("ArmNode", node_loop)):
                    for rate in args.rates:
                        runs = [fn(profile, port, rate, args.seconds) for _ in range(args.repeats)]
                        s = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
                        io = f"{s['io_p50_ms']:.2f}/{s['io_p99_ms']:.2f}" if "io_p50_ms" in s else "-"
                        table.add_row(bus, loop, f"{rate:g}", f"{s['rate_hz']:.1f}", f"{s['period_p50_ms']:.2f}",
                                      f"{s['jitter_p99_ms']:.2f}", f"{s['missed']:g}", io, f"{s['retries']:g}")
            finally:
                proc.terminate()
                proc.wait()
    Console(width=150).print(table)
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.1f} (shared), Python {sys.version.split()[0]}, emulator in its own process on a pty")
    return 0


if __name__ == "__main__":
    sys.exit(main())
