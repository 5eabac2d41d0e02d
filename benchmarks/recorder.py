"""Recorder throughput: 3 cameras 640x480 @ 30 Hz + joint_states @ 100 Hz recorded by recorder_node.

A synthetic robot process publishes the streams over DDS (images: a smooth scene with +-3 levels
of sensor noise, the hard case for lossless compression); recorder_node records back-to-back
episodes into a fresh store, once per image codec. Reported (medians over episodes where it makes
sense): frames not stored (capture-stamp gaps in the stored frames) and how many of those never
reached the recorder (gaps in the received stamps: publisher or transport starved of CPU), late /
dropped steps,
recorder CPU (process user+system time, % of one core), bytes written per second, the time between
one episode's last step and the next one's first step (save + start), and random-access loading of
16-step training windows with all keys.

    .venv/bin/python benchmarks/recorder.py [--seconds 20] [--episode-seconds 5] [--rate 30] [--latency 0.1] [--codec blosc jpeg] [--no-fsync]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from robot_stack.resources import apply_ros_environment, find_config, ros_environment

BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")
CAMERAS = ("front", "wrist", "side")

PUBLISHER = """
import sys, time
import numpy as np
import rclpy
from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.profile import load_profile
from robot_stack.resources import apply_ros_environment
apply_ros_environment()
rclpy.init()
profile = load_profile(sys.argv[1])
c = Contract(profile)
node = rclpy.create_node("synthetic_robot")
joints = c.publisher(node, c.joint_states)
cams = {name: c.publisher(node, c.camera(name).image) for name in profile.camera_names}
rng = np.random.default_rng(0)
frames = {}
for cam in profile.cameras:  # a smooth scene with +-3 levels of sensor noise, at each camera's size
    yy, xx = np.mgrid[0:cam.height, 0:cam.width]
    base = np.stack([xx * 255 // cam.width, yy * 255 // cam.height, (xx + yy) * 255 // (cam.width + cam.height)], -1)
    frames[cam.name] = [np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8) for _ in range(8)]
fps = profile.cameras[0].fps if profile.cameras else 30
names = profile.all_joint_names
t0 = node.get_clock().now().nanoseconds * 1e-9 + 0.2
kj = kc = 0
print("ready", flush=True)
while rclpy.ok():
    now = node.get_clock().now().nanoseconds * 1e-9
    while t0 + kj / 100 <= now:
        q = [np.sin(0.01 * kj + j) for j in range(len(names))]
        joints.publish(convert.make_joint_state(names, q, [0.0] * len(names), stamp=convert.to_stamp(t0 + kj / 100)))
        kj += 1
    while t0 + kc / fps <= now:
        for i, (name, pub) in enumerate(cams.items()):
            pub.publish(convert.array_to_image(frames[name][(kc + i) % 8], "rgb8", convert.to_stamp(t0 + kc / fps), name))
        kc += 1
    time.sleep(0.001)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def make_profile(folder: Path) -> Path:
    data = yaml.safe_load(find_config("robots", "so101").read_text())
    data["cameras"] = [{"name": n, "width": 640, "height": 480, "fps": 30} for n in CAMERAS]
    data["hardware"].pop("calibration", None)
    path = folder / "so101_3cam.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def call(node, srv_type, name: str, timeout: float = 60.0):
    import rclpy

    client = node.create_client(srv_type, name)
    if not client.wait_for_service(timeout_sec=timeout):
        raise SystemExit(f"service {name} did not appear")
    future = client.call_async(srv_type.Request())
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    return future.result()


def run_codec(codec: str, profile: Path, folder: Path, args: argparse.Namespace, node) -> dict:
    from std_srvs.srv import Trigger

    store_path = folder / f"bench_{codec}.zarr"
    recorder = subprocess.Popen(
        [str(BIN / "recorder_node"), "--ros-args", "-p", f"robot:={profile}", "-p", f"store:={store_path}",
         "-p", f"record_rate_hz:={args.rate}", "-p", f"latency_s:={args.latency}", "-p", f"image_codec:={codec}", "-p", "progress:=false", "-p", f"fsync:={str(args.fsync).lower()}"],
        env=ros_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (reply := call(node, Trigger, "episode/start")).success:
            if time.monotonic() > deadline:
                raise SystemExit(f"recorder never started: {reply.message}")
            time.sleep(0.5)
        cpu0, wall0 = cpu_seconds(recorder.pid), time.monotonic()
        gaps_wall, n_episodes = [], max(1, int(round(args.seconds / args.episode_seconds)))
        for k in range(n_episodes):
            time.sleep(args.episode_seconds)
            t = time.monotonic()
            reply = call(node, Trigger, "episode/save")
            if not reply.success:
                raise SystemExit(f"save failed: {reply.message}")
            if k < n_episodes - 1:
                call(node, Trigger, "episode/start")
                gaps_wall.append(time.monotonic() - t)
        cpu = (cpu_seconds(recorder.pid) - cpu0) / (time.monotonic() - wall0)
        wall = time.monotonic() - wall0
    finally:
        recorder.send_signal(signal.SIGINT)
        log = recorder.communicate(timeout=60)[0]
    from robot_stack.data.store import EpisodeStore

    store = EpisodeStore(store_path)
    if store.n_episodes != n_episodes:
        raise SystemExit(f"expected {n_episodes} episodes, store has {store.n_episodes}\n{log}")
    skipped, late, missing, dropped, gaps = 0, 0, 0, 0, []
    prev_last = None
    for i, info in enumerate(store.episodes):
        ep = store.episode(i, ["timestamp", *[f"{c}_stamp" for c in CAMERAS]])
        for c in CAMERAS:
            stamps = np.unique(ep[f"{c}_stamp"])
            expected = int(round((stamps[-1] - stamps[0]) * 30)) + 1
            skipped += expected - len(stamps)
        late += sum(info.late_frames.values())
        missing += sum(info.missing_frames.values())
        dropped += info.extra.get("dropped_steps", 0)
        if prev_last is not None:
            gaps.append(ep["timestamp"][0] - prev_last - 1.0 / args.rate)
        prev_last = ep["timestamp"][-1]
    written = store.nbytes_stored()
    load = load_speed(store)
    return {
        "codec": codec, "episodes": store.n_episodes, "steps": store.n_steps, "skipped": skipped, "missing": missing, "late": late,
        "dropped": dropped, "cpu": 100 * cpu, "mb_s": written / 1e6 / wall, "mb_frame": written / 1e6 / max(1, 3 * store.n_steps),
        "gap": float(np.median(gaps)) if gaps else float("nan"), "gap_wall": float(np.median(gaps_wall)) if gaps_wall else float("nan"),
        **load,
    }


def load_speed(store, window: int = 16, batches: int = 10, batch: int = 16) -> dict:
    starts = store.windows(window)
    rng = np.random.default_rng(0)
    out = {}
    for label, keys in (("all", None), ("lowdim", [k for k in store.keys if not k.endswith("_image")])):
        t = time.perf_counter()
        for _ in range(batches):
            for s in rng.choice(starts, batch):
                store.load_window(int(s), window, keys)
        out[f"load_{label}"] = batches * batch * window / (time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="recording time per codec")
    parser.add_argument("--episode-seconds", type=float, default=5.0, help="length of each episode")
    parser.add_argument("--rate", type=float, default=30.0, help="record_rate_hz of the recorder")
    parser.add_argument("--codec", nargs="+", default=["blosc", "jpeg"], choices=["blosc", "jpeg"])
    parser.add_argument("--latency", type=float, default=0.1, help="latency_s of the recorder (tick assembly delay)")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", help="recorder without fsync per file")
    args = parser.parse_args()
    apply_ros_environment()
    import rclpy

    folder = Path(tempfile.mkdtemp(prefix="recorder_bench_"))
    profile = make_profile(folder)
    robot = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(profile)], env=ros_environment(),
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    robot.stdout.readline()
    rclpy.init()
    node = rclpy.create_node("recorder_bench")
    rows = []
    try:
        for codec in args.codec:
            rows.append(run_codec(codec, profile, folder, args, node))
    finally:
        os.killpg(robot.pid, signal.SIGINT)
        robot.wait(timeout=20)
        node.destroy_node()
        rclpy.try_shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nrecorder_node: 3 cameras 640x480 @ 30 Hz + joint_states @ 100 Hz, recorded at {args.rate:g} Hz, "
          f"{args.seconds:g} s in {args.episode_seconds:g} s episodes, latency_s {args.latency:g}, fsync {'on' if args.fsync else 'off'}")
    print(f"machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), shared; "
          f"publisher and recorder on the same machine\n")
    header = ("codec", "steps", "frames not stored", "of which never received", "late", "dropped", "recorder CPU %", "write MB/s",
              "MB/frame", "gap s (data)", "save+start s", "load steps/s (all)", "load steps/s (lowdim)")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows:
        print(" | ".join([
            r["codec"], str(r["steps"]), str(r["skipped"]), str(r["missing"]), str(r["late"]), str(r["dropped"]), f"{r['cpu']:.0f}",
            f"{r['mb_s']:.1f}", f"{r['mb_frame']:.3f}", f"{r['gap']:.3f}", f"{r['gap_wall']:.3f}",
            f"{r['load_all']:.0f}", f"{r['load_lowdim']:.0f}",
        ]))


if __name__ == "__main__":
    main()
