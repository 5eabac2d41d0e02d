"""Camera node cost and latency: CPU of the node process per 640x480@30 stream, and capture ->
subscriber latency over DDS (the shipped shared-memory Fast DDS profile, reliable depth 2).

No camera is needed: the OpenCV node replays an MJPG video written here, and the RealSense node
plays an SDK recording of the emulated RealSense (librealsense software_device) written here, both
looped, each in its own process. Latency is subscriber receive time - header.stamp (the capture
stamp the node assigned); CPU is the node's process group user+system time over the measuring
window (/proc), in % of one core.

    .venv/bin/python benchmarks/camera_latency.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from robot_stack.resources import apply_ros_environment, ros_environment

BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[2] = pgrp (after pid, comm, state)
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def write_video(path: Path, frames: int = 90) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (480, 640, 3), np.uint8)
    for k in range(frames):
        writer.write(np.roll(base, 8 * k, axis=1))
    writer.release()
    return path


def write_profile(folder: Path, depth: bool, depth_encoding: str = "16UC1") -> Path:
    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parent.parent / "config/robots/so101.yaml").read_text())
    data["cameras"] = [{"name": "front", "width": 640, "height": 480, "fps": 30, "depth": depth, "depth_encoding": depth_encoding}]
    data["hardware"].pop("calibration", None)
    path = folder / f"robot_{int(depth)}_{depth_encoding}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def measure(node, executable: str, params: dict[str, str], seconds: float, depth: bool) -> dict:
    from sensor_msgs.msg import Image

    from robot_stack.contract import IMAGE_QOS
    from robot_stack.convert import to_sec

    latencies: dict[str, list[float]] = {"color": [], "depth": []}
    recording = threading.Event()

    def on_image(kind: str):
        def callback(msg: Image) -> None:
            if recording.is_set():
                latencies[kind].append(time.time() - to_sec(msg.header.stamp))
        return callback

    subs = [node.create_subscription(Image, "front/color/image_raw", on_image("color"), IMAGE_QOS)]
    if depth:
        subs.append(node.create_subscription(Image, "front/depth/image_rect_raw", on_image("depth"), IMAGE_QOS))
    args = [str(BIN / executable), "--ros-args"] + [a for k, v in params.items() for a in ("-p", f"{k}:={v}")]
    proc = subprocess.Popen(args, env=ros_environment(), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(4.0)  # start-up, discovery, clock-offset settling
        if proc.poll() is not None:
            raise RuntimeError(f"{executable} exited: {proc.stdout.read()}")
        cpu0, t0 = group_cpu_seconds(proc.pid), time.monotonic()
        recording.set()
        time.sleep(seconds)
        recording.clear()
        cpu = (group_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        for sub in subs:
            node.destroy_subscription(sub)
    color, dep = np.array(latencies["color"]) * 1e3, np.array(latencies["depth"]) * 1e3
    return {
        "cpu": 100 * cpu,
        "streams": 2 if depth else 1,
        "rate": len(color) / seconds,
        "lat": float(np.median(color)) if color.size else float("nan"),
        "p95": float(np.percentile(color, 95)) if color.size else float("nan"),
        "dlat": float(np.median(dep)) if dep.size else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring window per case (default 8)")
    args = parser.parse_args()

    apply_ros_environment()
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rich.console import Console
    from rich.table import Table

    from robot_stack.drivers.camera.emulated import EmulatedRealSense, record_bag

    console = Console(width=160)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        console.print("writing test media (MJPG video, RealSense recording)...")
        video = write_video(folder / "replay.avi")
        bag = record_bag(EmulatedRealSense(serial="000000000042"), folder / "replay.db3", frames=90)
        color_only, with_depth = write_profile(folder, False), write_profile(folder, True)
        metres = write_profile(folder, True, "32FC1")
        cases = [
            ("opencv_camera_node", "MJPG file, rgb8", {"robot": color_only, "device": video, "loop": "true"}, False),
            ("realsense_node", "recording, rgb8", {"robot": color_only, "bag": bag, "loop": "true"}, False),
            ("realsense_node", "rgb8 + depth 16UC1", {"robot": with_depth, "bag": bag, "loop": "true", "align_depth": "false"}, True),
            ("realsense_node", "rgb8 + aligned depth 32FC1", {"robot": metres, "bag": bag, "loop": "true"}, True),
        ]
        rclpy.init()
        node = rclpy.create_node("camera_latency_benchmark")
        executor = MultiThreadedExecutor(2)
        executor.add_node(node)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        rows = []
        try:
            for executable, label, params, depth in cases:
                console.print(f"measuring {executable}: {label} ({args.seconds:g} s)...")
                result = measure(node, executable, {k: str(v) for k, v in params.items()}, args.seconds, depth)
                rows.append((executable, label, result))
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()

    load = os.getloadavg()[0]
    table = Table(title=f"Camera nodes, 640x480@30 ({os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                        f"load average {load:.1f} at the end)")
    for column in ("node", "stream", "CPU % (1 core)", "CPU % per stream", "received Hz", "latency median ms",
                   "latency p95 ms", "depth latency median ms"):
        table.add_column(column, justify="left" if column in ("node", "stream") else "right")
    for executable, label, r in rows:
        table.add_row(executable, label, f"{r['cpu']:.1f}", f"{r['cpu'] / r['streams']:.1f}", f"{r['rate']:.1f}",
                      f"{r['lat']:.2f}", f"{r['p95']:.2f}", "-" if np.isnan(r["dlat"]) else f"{r['dlat']:.2f}")
    console.print(table)
    console.print("CPU includes decoding the replayed media (MJPG for OpenCV, the SDK's recording reader for RealSense); "
                  "latency is from the node's capture stamp to this subscriber, over shared-memory DDS.")


if __name__ == "__main__":
    main()
