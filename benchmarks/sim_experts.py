"""Scripted-expert success over N seeds per task on the in-process twin (gym env, no ROS).

    .venv/bin/python benchmarks/sim_experts.py [--robots so101 panda] [--tasks reach pick_cube push] [--seeds 50]

Prints a table: success rate, median episode length (policy steps) and wall time per episode.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from robot_stack.sim.experts import make_expert
from robot_stack.sim.gym_env import TwinEnv


def run(robot: str, task: str, seeds: int) -> dict:
    env = TwinEnv(robot, task)
    expert = make_expert(env.profile, env.task_config)
    successes, lengths, walls, failed = 0, [], [], []
    for seed in tqdm(range(seeds), desc=f"{robot}/{task}", leave=False):
        start = time.perf_counter()
        obs, info = env.reset(seed=seed)
        expert.reset()
        for step in range(env.max_steps):
            obs, _, terminated, truncated, info = env.step(expert.act({k: v.astype(float) for k, v in obs.items()}))
            if terminated or truncated:
                break
        walls.append(time.perf_counter() - start)
        lengths.append(step + 1)
        successes += int(info["success"])
        if not info["success"]:
            failed.append(seed)
    env.close()
    return {"success": successes / seeds, "steps": float(np.median(lengths)), "wall": float(np.median(walls)),
            "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", nargs="+", default=["so101", "panda"])
    parser.add_argument("--tasks", nargs="+", default=["reach", "pick_cube", "push"])
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()
    table = Table(title=f"Scripted experts, {args.seeds} seeds per task "
                        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)")
    for column in ("robot", "task", "success", "median steps", "median s/episode", "failed seeds"):
        table.add_column(column)
    for robot in args.robots:
        for task in args.tasks:
            r = run(robot, task, args.seeds)
            table.add_row(robot, task, f"{100 * r['success']:.0f}%", f"{r['steps']:.0f}", f"{r['wall']:.2f}",
                          ",".join(map(str, r["failed"][:10])) or "-")
    Console().print(table)


if __name__ == "__main__":
    main()
