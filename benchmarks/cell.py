"""The emulated cell as the drivers see it: real-time factor with its cameras, camera rate, latency and jitter.

Starts ``cell.launch.xml drivers:=true`` (the cell, servo_arm_node and one opencv_camera_node per
camera on the cell's MJPEG streams), lets it settle, then measures for ``--seconds``:

* the cell's physics real-time factor and overruns (its harness channel);
* per camera: the configured rate, the rate the driver publishes (from its stamps), and the
  driver's stamp minus the frame's true exposure time (``robot_stack.sim.cell.latency``: each
  published image matched to the streamed frame it shows): median, p90 and standard deviation,
  which is the camera latency and jitter the recorder and the policy server live with;
* the renderer's time per frame and the exposures it missed (rendering slower than the frame rate).

    .venv/bin/python benchmarks/cell.py [--cell default] [--cameras front,wrist] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="default")
    parser.add_argument("--cameras", default="front,wrist")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--log", default="/tmp/robot_stack_cell_benchmark.log")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from robot_stack import convert
    from robot_stack.contract import Contract
    from robot_stack.sim.cell.evaluate import CellSession
    from robot_stack.sim.cell.latency import StreamTap, centre_crop, stamp_delays

    names = [c.strip() for c in args.cameras.split(",") if c.strip()]
    with open(args.log, "w") as log, CellSession(None, args.cell, cameras=args.cameras, log=log) as session:
        contract = Contract(session.profile)
        published: dict[str, list] = {n: [] for n in names}
        for name in names:
            topic = contract.camera(name).image

            def on_image(msg, name=name):
                published[name].append((convert.to_sec(msg.header.stamp), centre_crop(convert.image_to_array(msg))))

            session.node.create_subscription(topic.type, topic.name, on_image, topic.qos)
        taps = {n: StreamTap(session.streams[n]) for n in names}
        end = time.monotonic() + args.settle
        while time.monotonic() < end:
            session.executor.spin_once(timeout_sec=0.05)
        before = session.harness.state()
        for n in names:
            published[n].clear()
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            session.executor.spin_once(timeout_sec=0.05)
        after = session.harness.state()
        for tap in taps.values():
            tap.close()

    wall = after["time"] - before["time"]
    rtf = (after["sim_time"] - before["sim_time"]) / wall
    load = os.getloadavg()
    console = Console(width=160)
    console.print(f"cell {args.cell!r}, cameras {args.cameras}, {args.seconds:g} s on {platform.machine()} "
                  f"{os.cpu_count()} CPUs; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    console.print(f"physics real-time factor {rtf:.3f} (overruns {after['overruns'] - before['overruns']})")
    table = Table("camera", "size", "fps set", "driver Hz", "delay median ms", "p90 ms", "jitter (std) ms",
                  "render ms", "missed", "dropped")
    for name in names:
        stamps = np.array([t for t, _ in published[name]])
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
        delays = stamp_delays(list(taps[name].frames), published[name]) * 1000
        s0, s1 = before["cameras"][name], after["cameras"][name]
        row = [f"{np.median(delays):.0f}", f"{np.percentile(delays, 90):.0f}", f"{np.std(delays):.1f}"] \
            if delays.size else ["-", "-", "-"]
        table.add_row(name, f"{s1['width']}x{s1['height']}", f"{s1['fps']:g}", f"{rate:.1f}", *row,
                      f"{s1['render_ms_median']:.0f}", str(s1["missed"] - s0["missed"]), str(s1["dropped"] - s0["dropped"]))
    console.print(table)
    gap = session.config.effective_gap.camera
    console.print(f"configured: latency {gap.latency_ms:g} ms, jitter {gap.jitter_ms:g} ms, drop rate {gap.drop_rate:g}; "
                  f"matched images: {', '.join(f'{n} {len(published[n])}' for n in names)}")


if __name__ == "__main__":
    main()
