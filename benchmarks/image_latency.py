"""Image latency (header stamp -> received and converted) between ROS 2 processes started by the launch runner.

Cases, each at 640x480 and 1280x720 rgb8 and 30 Hz on the so101 profile's ``front`` camera topic
(name and QoS from the Contract: reliable, depth 2):

* ``runner profile``  publisher and subscriber processes launched by ``robot-stack launch`` with the
  shipped Fast DDS profile (shared memory, 16 MiB segment),
* ``default Fast DDS`` the same two processes with FASTDDS_DEFAULT_PROFILES_FILE unset,
* ``same process``    publisher and subscriber nodes in one process (the baseline).

The publisher stamps each frame just before converting it (``array_to_image``) and publishing;
the subscriber takes the receive time after ``image_to_array``. Prints medians and p90 (ms).

    .venv/bin/python benchmarks/image_latency.py [--rounds 3] [--frames 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SIZES = {"640x480": (480, 640), "1280x720": (720, 1280)}
RATE_HZ = 30.0
WARMUP = 15


# -- roles (run in the launched processes) ---------------------------------------------------------
def _image_topic():
    from robot_stack.contract import Contract
    from robot_stack.profile import load_profile

    return Contract(load_profile("so101")).camera("front").image


def _frames(height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(4)]


def publish(node, height: int, width: int, count: int, stop: threading.Event | None = None) -> int:
    """Publish ``count`` frames at 30 Hz once a subscriber is matched; returns frames sent."""
    from robot_stack.convert import array_to_image, to_stamp

    topic = _image_topic()
    pub = node.create_publisher(topic.type, topic.name, topic.qos)
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let discovery settle on both sides
    frames = _frames(height, width)
    next_t = time.monotonic()
    for i in range(count):
        if stop is not None and stop.is_set():
            return i
        next_t += 1.0 / RATE_HZ
        msg = array_to_image(frames[i % len(frames)], "rgb8", stamp=to_stamp(time.time()), frame_id=str(i))
        pub.publish(msg)
        time.sleep(max(0.0, next_t - time.monotonic()))
    return count


class Receiver:
    def __init__(self, node, expected: int) -> None:
        from robot_stack.convert import image_to_array, to_sec

        self._to_array, self._to_sec = image_to_array, to_sec
        topic = _image_topic()
        self.latencies: dict[int, float] = {}
        self.expected = expected
        self.done = threading.Event()
        self.sub = node.create_subscription(topic.type, topic.name, self._on_image, topic.qos)

    def _on_image(self, msg) -> None:
        array = self._to_array(msg)
        _ = int(array[0, 0, 0])  # touch the pixels
        self.latencies[int(msg.header.frame_id)] = (time.time() - self._to_sec(msg.header.stamp)) * 1e3
        if max(self.latencies) >= self.expected - 1:
            self.done.set()

    def result(self) -> dict:
        kept = [v for k, v in sorted(self.latencies.items()) if k >= WARMUP]
        return {"latencies_ms": kept, "received": len(kept), "sent": self.expected - WARMUP}


def role_main(args: argparse.Namespace) -> int:
    import rclpy  # the environment (DDS profile, domain) comes from the launch runner
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    height, width = SIZES[args.size]
    count = args.frames + WARMUP
    node = rclpy.create_node(f"image_latency_{args.role}")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        if args.role == "pub":
            publish(node, height, width, count)
            time.sleep(2.0)  # reliable delivery of the last frames
        else:
            receiver = Receiver(node, count)
            stop = threading.Event()
            if args.role == "same":
                pub_node = rclpy.create_node("image_latency_pub")
                executor.add_node(pub_node)
                threading.Thread(target=publish, args=(pub_node, height, width, count, stop), daemon=True).start()
            deadline = time.monotonic() + count / RATE_HZ + 90
            while not receiver.done.is_set() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
            stop.set()
            Path(args.out).write_text(json.dumps(receiver.result()))
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return code


# -- driver ----------------------------------------------------------------------------------------
LAUNCH = """<launch>
  <arg name="size"/>
  <arg name="frames"/>
  <arg name="out"/>
  <arg name="profile" description="true: the shipped Fast DDS profile; false: Fast DDS defaults"/>
  <set_env name="FASTDDS_DEFAULT_PROFILES_FILE" value="$(find-pkg-share robot_stack)/config/fastdds.xml" if="$(var profile)"/>
  <unset_env name="FASTDDS_DEFAULT_PROFILES_FILE" unless="$(var profile)"/>
  <executable cmd="{python} {script} --role sub --size $(var size) --frames $(var frames) --out $(var out)" name="sub"/>
  <executable cmd="{python} {script} --role pub --size $(var size) --frames $(var frames)" name="pub"/>
</launch>
"""


def run_case(case: str, size: str, frames: int, workdir: Path) -> dict:
    import io

    from robot_stack.launcher import LaunchRunner

    out = workdir / f"{case.replace(' ', '_')}_{size}.json"
    out.unlink(missing_ok=True)
    launch = workdir / "image_latency.launch.xml"
    launch.write_text(LAUNCH.format(python=sys.executable, script=Path(__file__).resolve()))
    log = io.StringIO()
    if case == "same process":
        launch = workdir / "same.launch.xml"
        launch.write_text(
            f'<launch>\n  <executable cmd="{sys.executable} {Path(__file__).resolve()} --role same '
            f'--size {size} --frames {frames} --out {out}" name="same"/>\n</launch>\n'
        )
        args = {}
    else:
        args = {"size": size, "frames": str(frames), "out": str(out), "profile": str(case == "runner profile").lower()}
    runner = LaunchRunner(launch, args, stdout=log, stderr=log).start()
    code = runner.wait(timeout=frames / RATE_HZ + 180)
    if code is None:
        runner.stop(timeout=20)
    if code != 0 or not out.is_file():
        raise SystemExit(f"{case} {size} failed (exit {code}):\n{log.getvalue()[-3000:]}")
    return json.loads(out.read_text())


def summarize(result: dict) -> tuple[float, float]:
    values = np.asarray(result["latencies_ms"]) if result["latencies_ms"] else np.asarray([np.nan])
    return float(np.median(values)), float(np.percentile(values, 90))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100, help="measured frames per run (after 15 warm-up frames)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every case, interleaved; latencies are pooled")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--role", choices=("pub", "sub", "same"), help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=tuple(SIZES), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        return role_main(args)

    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(100, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    cases = ("same process", "runner profile", "default Fast DDS")
    results: dict[str, dict[str, dict]] = {c: {} for c in cases}
    with tempfile.TemporaryDirectory(prefix="image_latency_") as tmp:
        # Rounds interleave the cases so a burst of load on the shared machine hits all of them.
        jobs = [(c, s) for _ in range(args.rounds) for s in SIZES for c in cases]
        for case, size in tqdm(jobs, desc="runs", unit="run"):
            run = run_case(case, size, args.frames, Path(tmp))
            pooled = results[case].setdefault(size, {"latencies_ms": [], "received": 0, "sent": 0})
            for key in pooled:
                pooled[key] += run[key]

    load = os.getloadavg()
    console = Console(width=140)
    console.print(f"sensor_msgs/Image rgb8 at {RATE_HZ:g} Hz, reliable depth 2, {args.rounds} x {args.frames} frames per case; "
                  f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                  f"load average {load[0]:.1f}, Python {platform.python_version()}")
    table = Table("case", *[f"{s} median / p90 (ms)" for s in SIZES], *[f"{s} vs same process" for s in SIZES],
                  "delivered")
    base = {s: summarize(results["same process"][s])[0] for s in SIZES}
    for case in cases:
        cells, ratios, delivered = [], [], []
        for size in SIZES:
            median, p90 = summarize(results[case][size])
            cells.append(f"{median:.1f} / {p90:.1f}")
            ratios.append(f"{median / base[size]:.2f}x")
            delivered.append(f"{results[case][size]['received']}/{results[case][size]['sent']}")
        table.add_row(case, *cells, *ratios, ", ".join(delivered))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
