"""Periodic twin evaluation while training a diffusion policy (``--eval-every``)."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import torch

from robot_stack.cli import main as cli_main
from robot_stack.data.store import EpisodeStore
from robot_stack.policies.diffusion import checkpoint as ckpt
from robot_stack.sim.experts import make_expert
from robot_stack.sim.gym_env import TwinEnv
from conftest import REPO

torch.set_num_threads(1)


def record_expert(path, task: str, episodes: int) -> EpisodeStore:
    """Scripted-expert episodes from the in-process twin, stored as the recorder stores them (task named)."""
    env = TwinEnv("so101", task)
    expert = make_expert(env.profile, env.task_config)
    store = EpisodeStore(path, "a", fsync=False)
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        steps, done = [], False
        while not done:
            action = expert.act({k: v.astype(float) for k, v in obs.items()}).astype(np.float32)
            steps.append({"joint_pos": obs["joint_pos"], "action": action})
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        data = {k: np.stack([s[k] for s in steps]) for k in steps[0]}
        store.append_episode(data, task=task, success=bool(info["success"]), profile={"name": "so101"})
    env.close()
    return store


def short_pick_task(tmp_path) -> str:
    """pick_cube with 3 s episodes (the expert needs ~2.5 s): keeps failing rollouts short."""
    text = (REPO / "config" / "tasks" / "pick_cube.yaml").read_text().replace("episode_seconds: 10", "episode_seconds: 3")
    assert "episode_seconds: 3" in text
    (tmp_path / "pick_short.yaml").write_text(text)
    return str(tmp_path / "pick_short.yaml")


def test_train_with_periodic_twin_eval(tmp_path, capsys):
    task = short_pick_task(tmp_path)
    store = record_expert(tmp_path / "pick.zarr", task, 3)
    run = tmp_path / "run"
    assert cli_main(["train", "diffusion", "--data", str(store.path), "--out", str(run), "--preset", "tiny",
                     "--obs-keys", "joint_pos", "--steps", "20", "--batch-size", "8", "--val-every", "10",
                     "--eval-every", "10", "--eval-episodes", "2", "--no-progress", "--device", "cpu"]) == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if "eval_success_rate" in m]
    assert [m["step"] for m in evals] == [10, 20]
    for m in evals:
        assert m["eval_task"] == task  # taken from the store
        assert m["eval_episodes"] == 2 and 0 <= m["eval_successes"] <= 2
        assert m["eval_success_rate"] == m["eval_successes"] / 2
        lo, hi = m["eval_ci95"]
        assert 0.0 <= lo <= m["eval_success_rate"] <= hi <= 1.0
        (video,) = m["eval_videos"]
        assert video.endswith(f"videos/step_{m['step']:06d}_00.mp4")
        reader = imageio.get_reader(video)
        frame = reader.get_data(0)
        assert reader.count_frames() >= 10 and frame.ndim == 3 and frame.shape[-1] == 3 and frame.std() > 1.0
        reader.close()
    assert (run / "success.png").stat().st_size > 1000 and (run / "loss.png").stat().st_size > 1000
    # checkpoints/best follows the success rate (ties: the later step), not the validation loss
    best_step = max(evals, key=lambda m: (m["eval_success_rate"], m["step"]))["step"]
    assert json.loads((run / "checkpoints" / "best" / "config.json").read_text())["step"] == best_step
    ckpt.load_policy(run / "checkpoints" / "best")
    assert f"twin {task} " in capsys.readouterr().out

    # resuming keeps the success history and evaluates again at the new end
    assert cli_main(["train", "diffusion", "--out", str(run), "--resume", "--steps", "30", "--no-progress"]) == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "eval_success_rate" in m] == [10, 20, 30]


def test_training_on_the_simulators_ground_truth_needs_privileged(tmp_path, capsys):
    """Refused before any data is read: the recipe must be one a hardware recording can feed."""
    args = ["train", "diffusion", "--data", str(tmp_path / "none.zarr"), "--out", str(tmp_path / "run"),
            "--preset", "tiny", "--obs-keys", "joint_pos,object_state", "--steps", "2"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "object_state" in err and "joint_pos, joint_vel, ee_pose" in err, err
    assert "--privileged" in err


def test_eval_every_needs_a_task(tmp_path, capsys):
    from robot_stack.policies.diffusion.synthetic import write_store

    store = write_store(tmp_path / "demos.zarr", n_episodes=2, length=20)  # names no task
    args = ["train", "diffusion", "--data", str(store), "--preset", "tiny", "--obs-keys", "joint_pos", "--steps", "2",
            "--eval-every", "1", "--no-progress", "--device", "cpu"]
    assert cli_main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "give --eval-task" in capsys.readouterr().err
    assert cli_main([*args, "--out", str(tmp_path / "b"), "--eval-task", "no_such_task"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no_such_task" in err
