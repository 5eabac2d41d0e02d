"""How fast a policy is validated: in-process episodes/s and ROS episodes per minute, on sim time and in real time.

    .venv/bin/python benchmarks/runtime_eval.py --policy runs/demo/policy/checkpoints/latest
    .venv/bin/python benchmarks/runtime_eval.py --policy ... --before /path/to/old/checkout/.venv/bin/python

* in-process: ``evaluate_in_process`` (the runtime core on sim time, no ROS), episodes per second,
  median of ``--repeats`` runs of ``--episodes`` episodes (same seeds each run);
* ROS on sim time: ``evaluate_over_ros`` (deploy.launch.xml: twin + policy_server in lock-step), episodes
  per minute of wall time (resets included, launch start-up excluded);
* ROS in real time (``--realtime``, slow): the same on the wall clock, for reference.

``--before PYTHON`` also times the in-process evaluation of another checkout (e.g. the commit before the
runtime core) with that interpreter, on the same policy and seeds, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

IN_PROCESS = """
import json, sys, time
from robot_stack.policies.evaluate import evaluate_in_process
policy, episodes = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
report = evaluate_in_process(policy, "pick_cube", "so101", episodes, seed=1000, videos=0)
print(json.dumps({"seconds": time.perf_counter() - start, "successes": report.successes,
                  "sim_seconds": sum(e.steps for e in report.episodes) / 10.0}))
"""


def in_process(python: str, policy: str, episodes: int) -> dict:
    out = subprocess.run([python, "-c", IN_PROCESS, policy, str(episodes)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def over_ros(policy: str, episodes: int, sim_time: bool) -> dict:
    from robot_stack.policies.evaluate import evaluate_over_ros

    with tempfile.TemporaryDirectory() as tmp:
        report = evaluate_over_ros(policy, "pick_cube", "so101", episodes, seed=1000, sim_time=sim_time,
                                   log=Path(tmp) / "launch.log")
    return {"seconds": report.wall_seconds, "successes": report.successes}


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="runs/demo/policy/checkpoints/latest", help="checkpoint folder")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per run")
    parser.add_argument("--repeats", type=int, default=3, help="in-process runs (median)")
    parser.add_argument("--before", default="", metavar="PYTHON", help="interpreter of another checkout to compare")
    parser.add_argument("--realtime", action="store_true", help="also time the ROS evaluation in real time")
    args = parser.parse_args()
    if not (Path(args.policy) / "model.safetensors").is_file():
        sys.exit(f"{args.policy}: not a checkpoint (run robot-stack demo first, or give --policy)")

    interpreters = [sys.executable] + ([args.before] if args.before else [])
    runs: dict[str, list[dict]] = {python: [] for python in interpreters}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for python in interpreters:
            runs[python].append(in_process(python, args.policy, args.episodes))

    def median_rate(python: str) -> tuple[float, dict]:
        mid = sorted(runs[python], key=lambda r: r["seconds"])[len(runs[python]) // 2]
        return args.episodes / mid["seconds"], mid

    load = os.getloadavg()[0]
    table = Table("path", "episodes", "successes", "wall s", "rate",
                  title=f"policy validation speed ({args.policy}; load {load:.1f} on {os.cpu_count()} cores)")
    rate, run = median_rate(sys.executable)
    table.add_row("in-process (runtime core, sim time)", str(args.episodes), str(run["successes"]),
                  f"{run['seconds']:.1f}", f"{rate:.2f} episodes/s")
    if args.before:
        before, old = median_rate(args.before)
        table.add_row(f"in-process, before ({args.before})", str(args.episodes), str(old["successes"]),
                      f"{old['seconds']:.1f}", f"{before:.2f} episodes/s")
        table.add_row("ratio now / before", "", "", "", f"{rate / before:.2f}x")
    ros = over_ros(args.policy, args.episodes, sim_time=True)
    table.add_row("ROS deploy path, sim time (lock-step)", str(args.episodes), str(ros["successes"]),
                  f"{ros['seconds']:.1f}", f"{60 * args.episodes / ros['seconds']:.1f} episodes/min")
    if args.realtime:
        real = over_ros(args.policy, args.episodes, sim_time=False)
        table.add_row("ROS deploy path, real time", str(args.episodes), str(real["successes"]),
                      f"{real['seconds']:.1f}", f"{60 * args.episodes / real['seconds']:.1f} episodes/min")
    Console().print(table)
    started = time.strftime("%Y-%m-%d %H:%M")
    Console().print(f"[dim]{started}, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")


if __name__ == "__main__":
    main()
