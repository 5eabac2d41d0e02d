"""One execution path: the in-process evaluation and the ROS deploy path (twin_node + policy_server over
DDS, on sim time in lock-step) run the same runtime core and give the same plans, observation for
observation, including an injected inference latency, which changes both alike."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from robot_stack.policies.diffusion.checkpoint import save_checkpoint
from robot_stack.policies.diffusion.config import ShapeMeta, preset
from robot_stack.policies.diffusion.policy import DiffusionPolicy
from robot_stack.policies.evaluate import evaluate_in_process, evaluate_over_ros
from robot_stack.policies.runner import RuntimeConfig
from robot_stack.profile import load_profile

PROFILE = load_profile("so101")


@pytest.fixture(scope="module")
def moving_policy(tmp_path_factory):
    """An untrained policy on joints and end-effector pose whose actions swing the arm around its home."""
    torch.manual_seed(0)
    shape = ShapeMeta(robot="so101", joint_names=tuple(PROFILE.all_joint_names),
                      lowdim_dims={"joint_pos": 6, "ee_pose": 7}, action_dim=6)
    cfg = preset("tiny")
    cfg = dataclasses.replace(cfg, obs=dataclasses.replace(cfg.obs, lowdim_keys=("joint_pos", "ee_pose")))
    policy = DiffusionPolicy(cfg, shape)
    lower = np.append(PROFILE.lower, -0.1) * 0.3
    upper = np.append(PROFILE.upper, 1.2) * 0.3
    policy.normalizer.fit({"joint_pos": np.stack([lower, upper]), "ee_pose": np.stack([-np.ones(7), np.ones(7)]),
                           "action": np.stack([lower, upper])})
    return save_checkpoint(tmp_path_factory.mktemp("parity") / "policy", policy)


def plans(path):
    """Plans of the evaluation episodes (episode 0 over ROS is the policy acting before the first reset)."""
    return [json.loads(line) for line in path.read_text().splitlines() if json.loads(line)["episode"] >= 1]


def run_both(checkpoint, folder, latency):
    runtime = RuntimeConfig(inference_latency=latency)
    local = evaluate_in_process(checkpoint, "pick_cube", "so101", 2, seed=7, videos=0, runtime=runtime,
                                plan_log=folder / "in_process.jsonl")
    ros = evaluate_over_ros(checkpoint, "pick_cube", "so101", 2, seed=7, runtime=runtime, log=folder / "ros.log",
                            plan_log=folder / "ros.jsonl")
    return local, ros, plans(folder / "in_process.jsonl"), plans(folder / "ros.jsonl")


ROUNDING = 1e-4
"""Actions (and observations, by a tenth of it) that differ by more than this no longer differ by float
rounding alone."""


def assert_same_plans(a, b, at_least: int = 4):
    """Plan for plan the same times, observations and actions, in every episode, until float rounding (the
    policy's float32 arithmetic in two processes) has been amplified by contact into a visibly different
    motion; that may not happen in the first ``at_least`` plans (3 s) of an episode."""
    episodes = sorted({p["episode"] for p in a})
    assert episodes == sorted({p["episode"] for p in b})
    for episode in episodes:
        xs, ys = ([p for p in plans if p["episode"] == episode] for plans in (a, b))
        same = 0
        for x, y in zip(xs, ys):
            assert x["t"] == y["t"], (episode, x["t"], y["t"])
            if not (np.allclose(x["actions"], y["actions"], atol=ROUNDING)
                    and all(np.allclose(x["obs"][key], y["obs"][key], atol=ROUNDING / 10) for key in x["obs"])):
                break
            same += 1
        assert same >= min(at_least, len(xs), len(ys)), f"episode {episode}: plans differ from t = {xs[same]['t']}"
        if same == len(xs):
            assert len(xs) == len(ys), episode


@pytest.fixture(autouse=True)
def one_inference_thread(monkeypatch):
    """Both paths infer with one thread (the policy server inherits the environment): float32 results of
    the same input are then bitwise equal in the two processes, and only contact can amplify rounding."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_in_process_and_ros_run_the_same_plans_and_latency_changes_both_alike(moving_policy, tmp_path):
    (tmp_path / "fast").mkdir()
    (tmp_path / "slow").mkdir()
    local, ros, local_plans, ros_plans = run_both(moving_policy, tmp_path / "fast", 0.05)
    assert len(local_plans) >= 2 * 12  # an episode of 10 s re-plans every 0.75 s
    assert_same_plans(local_plans, ros_plans)
    assert [(e.success, e.steps) for e in local.episodes] == [(e.success, e.steps) for e in ros.episodes]
    # how fast the ROS path runs on sim time is benchmarks/runtime_eval.py's, not a wall-clock assert here

    _, _, slow_local, slow_ros = run_both(moving_policy, tmp_path / "slow", 0.3)
    assert_same_plans(slow_local, slow_ros)
    # the latency changed what happened: later plans see the arm where the delayed chunks took it
    assert [p["stamp"] - p["t"] for p in slow_local] == pytest.approx([0.3] * len(slow_local))
    second = [p for p in local_plans if p["episode"] == 1][1]
    slow_second = [p for p in slow_local if p["episode"] == 1][1]
    assert not np.allclose(second["obs"]["joint_pos"], slow_second["obs"]["joint_pos"], atol=1e-3)
