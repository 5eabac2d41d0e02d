"""Twin speed: real-time factor of the twin node with 0, 1 and 2 cameras, and gym env steps/s.

    .venv/bin/python benchmarks/sim_realtime.py [--robot so101] [--seconds 10]

The real-time factor is measured on a real twin_node process run as fast as possible
(realtime_factor:=0, which publishes /clock and lets the camera renderer pace the sim so no frame
is dropped): sim seconds per wall second. >= 1.0 means the twin can run in real time with those
cameras. Cameras are the profile's (640x480 at 30 Hz for so101). Rendering runs on its own thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from robot_stack.resources import apply_ros_environment, ros_environment  # noqa: E402


def twin_rtf(robot: str, cameras: str, seconds: float) -> tuple[float, float]:
    """(sim s per wall s, camera frames per wall s) of a twin_node run as fast as possible."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from robot_stack.contract import IMAGE_QOS

    twin = subprocess.Popen([str(Path(sys.executable).parent / "twin_node"), "--ros-args", "-p", f"robot:={robot}",
                             "-p", "task:=pick_cube", "-p", f"cameras:={cameras}", "-p", "realtime_factor:=0.0"],
                            env=ros_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("rtf_probe", context=context)
    clocks: list[tuple[float, float]] = []
    frames: list[float] = []
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(
        (time.monotonic(), m.clock.sec + m.clock.nanosec * 1e-9)), 100)
    for cam in [c for c in cameras.split(",") if c and c != "none"]:
        node.create_subscription(Image, f"{cam}/color/image_raw", lambda m: frames.append(time.monotonic()), IMAGE_QOS)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while len(clocks) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # warm-up
        w0, s0, f0 = clocks[-1][0], clocks[-1][1], len(frames)
        time.sleep(seconds)
        w1, s1 = clocks[-1]
        return (s1 - s0) / (w1 - w0), (len(frames) - f0) / (w1 - w0)
    finally:
        os.killpg(twin.pid, signal.SIGINT)
        twin.wait(timeout=20)
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


def gym_steps_per_second(robot: str, cameras: list[str], steps: int) -> float:
    from robot_stack.sim.gym_env import TwinEnv

    env = TwinEnv(robot, "pick_cube", cameras=cameras)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        action = obs["joint_pos"] + rng.normal(0, 0.05, obs["joint_pos"].shape)
        obs, *_ = env.step(np.clip(action, env.action_space.low, env.action_space.high))
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="so101")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per twin run")
    parser.add_argument("--steps", type=int, default=200, help="gym env steps per measurement")
    args = parser.parse_args()
    apply_ros_environment()
    load = os.getloadavg()[0]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f} at start"

    table = Table(title=f"Twin real-time factor, {args.robot}, pick_cube, cameras 640x480 @ 30 Hz ({machine})")
    for column in ("cameras", "real-time factor", "camera frames/s (all cameras)"):
        table.add_column(column)
    for cameras in ("none", "front", "front,wrist"):
        rtf, fps = twin_rtf(args.robot, cameras, args.seconds)
        table.add_row(cameras, f"{rtf:.2f}x", f"{fps:.1f}" if cameras != "none" else "-")
    Console().print(table)

    table = Table(title=f"In-process gym env (TwinEnv), {args.robot}, pick_cube, 10 Hz policy steps ({machine})")
    for column in ("observation cameras", "env steps/s", "sim s per wall s"):
        table.add_column(column)
    for cameras in ([], ["front"]):
        rate = gym_steps_per_second(args.robot, cameras, args.steps if not cameras else max(20, args.steps // 10))
        table.add_row(",".join(cameras) or "none (state only)", f"{rate:.1f}", f"{rate / 10:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
