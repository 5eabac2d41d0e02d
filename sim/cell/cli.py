"""``robot-stack cell``: run the emulated robot cell (servo bus + IP cameras + harness) until stopped."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from robot_stack.cli import add_command

DESCRIPTION = """\
Run the emulated robot cell: the twin's scene (arm, table, task objects) stepped in real time and
changed by a reality gap (config/cells/<name>.yaml), reachable only the way hardware is:
  the arm    a Feetech/Dynamixel servo bus on a pseudo-terminal (servo_arm_node port:=...)
  cameras    MJPEG over HTTP on 127.0.0.1 (opencv_camera_node device:=http://...)
  leader     a leader arm on a second servo bus (teleop_node device:=leader)
  harness    HTTP/JSON for the evaluation harness only (ground truth, object resets)
The first stdout line is JSON naming all four. Stop with Ctrl-C. See docs/cell.md."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "cell", "run the emulated robot cell (hardware interfaces + reality gap)", DESCRIPTION)
    add_arguments(p)
    p.set_defaults(handler=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cell", default="default", help="cell name (config/cells) or YAML path")
    p.add_argument("--cameras", default="all", help="comma list of cameras to stream, 'all' or 'none'")
    p.add_argument("--link", default=None, help="symlink to the arm's bus (a stable port name)")
    p.add_argument("--leader-link", default=None, help="symlink to the leader arm's bus")
    p.add_argument("--host", default="127.0.0.1", help="address the camera and harness servers listen on")
    p.add_argument("--camera-port", type=int, default=8765, help="MJPEG port (0: any free port)")
    p.add_argument("--harness-port", type=int, default=8766, help="harness port (0: any free port)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first object placement")
    p.add_argument("--status-every", type=float, default=10.0, help="seconds between status lines on stderr (0: none)")


def run(args: argparse.Namespace) -> int:
    from robot_stack.sim.cell.cell import Cell
    from robot_stack.sim.cell.config import load_cell

    cell = Cell(load_cell(args.cell), cameras=args.cameras, seed=args.seed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        info = cell.open(link=args.link, leader_link=args.leader_link, host=args.host, camera_port=args.camera_port,
                         harness_port=args.harness_port)
        print(json.dumps(info), flush=True)
        print(f"cell {cell.config.name!r}: {cell.profile.name} on {info['arm']}, task {cell.task.config.name}, "
              f"cameras {', '.join(info['cameras'].values()) or 'none'}, harness {info['harness']}",
              file=sys.stderr, flush=True)
        while not stop.wait(args.status_every if args.status_every > 0 else None):
            print(status_line(cell.state()), file=sys.stderr, flush=True)
    finally:
        cell.close()
    return 0


def status_line(state: dict) -> str:
    cams = ", ".join(f"{name} {s['rate_hz']:.1f} fps (delay {s['delay_ms_median']:.0f}+-{s['delay_ms_std']:.0f} ms)"
                     for name, s in state["cameras"].items())
    return f"cell: real-time factor {state['realtime_factor']:.3f}, overruns {state['overruns']}" + (f"; {cams}" if cams else "")

