"""Scripted experts: >= 95% success in-process (10 seeds per task here; benchmarks/sim_experts.py
reports 50), and the expert node driving the twin over DDS like a teleoperator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, wait_for

from robot_stack.resources import ros_environment
from robot_stack.sim.experts import make_expert
from robot_stack.sim.gym_env import TwinEnv

BIN = Path(sys.executable).parent
SEEDS = range(100, 110)


def success_rate(robot: str, task: str, seeds) -> float:
    env = TwinEnv(robot, task)
    expert = make_expert(env.profile, env.task_config)
    wins = 0
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        expert.reset()
        for _ in range(env.max_steps):
            obs, _, terminated, truncated, info = env.step(expert.act({k: v.astype(float) for k, v in obs.items()}))
            if terminated or truncated:
                break
        wins += int(info["success"])
    return wins / len(seeds)


@pytest.mark.parametrize("task", ["reach", "pick_cube", "push", "pick_cube_wide"])
def test_so101_expert_succeeds(task):
    assert success_rate("so101", task, SEEDS) >= 0.95


@pytest.mark.parametrize("task", ["reach", "pick_cube", "pick_cube_wide"])
def test_panda_expert_succeeds(task):
    assert success_rate("panda", task, range(100, 104)) >= 0.95


def test_expert_node_drives_the_twin_over_dds(tmp_path):
    env = ros_environment()
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("twin", "expert")}
    twin = subprocess.Popen([str(BIN / "twin_node"), "--ros-args", "-p", "task:=pick_cube", "-p", "cameras:=none"],
                            env=env, stdout=logs["twin"], stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    expert = subprocess.Popen([str(BIN / "expert_node"), "--ros-args", "-p", "task:=pick_cube", "-p", "episodes:=2"],
                              env=env, stdout=logs["expert"], stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    out = lambda: (tmp_path / "expert.log").read_text()  # noqa: E731
    try:
        wait_for(lambda: "episode 2: success=" in out() or expert.poll() is not None or twin.poll() is not None,
                 120, "two expert episodes")
        time.sleep(0.2)
        assert "episode 2: success=true" in out(), out() + (tmp_path / "twin.log").read_text()
        assert "(2/2 successful)" in out()
        assert expert.wait(timeout=20) == 0, "the expert exits after its episodes"
    finally:
        for proc in (expert, twin):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in (expert, twin):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
