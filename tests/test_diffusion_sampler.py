"""Few-step sampling: the sampler a checkpoint carries, its network evaluations, the CLI, policy_server.

Success at equal level on the demo's task (50 episodes, the few-step sampler inside the 10-step
policy's 95% interval) needs the demo's trained policy: ``robot-stack train sampler <ckpt> --check``
checks it, run by the learning gate on the demo's checkpoint (tests/test_learning_gate.py).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from conftest import wait_for
from test_diffusion_eval import short_pick_task
from test_policy_server import JointStatePublisher

from robot_stack.cli import main as cli_main
from robot_stack.contract import Contract
from robot_stack.policies.diffusion import checkpoint as ckpt
from robot_stack.policies.diffusion.config import ShapeMeta, preset, replace
from robot_stack.policies.diffusion.policy import DiffusionPolicy
from robot_stack.policies.diffusion.sampler import compare_samplers, write_sampler_checkpoint
from robot_stack.profile import load_profile
from robot_stack.resources import ros_environment

torch.set_num_threads(1)
PROFILE = load_profile("so101")


def x0_policy(seed: int = 0) -> DiffusionPolicy:
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos",)}, scheduler={"prediction_type": "sample"})
    shape = ShapeMeta(robot="so101", joint_names=tuple(PROFILE.all_joint_names), lowdim_dims={"joint_pos": 6},
                      action_dim=6)
    torch.manual_seed(seed)
    policy = DiffusionPolicy(cfg, shape)
    span = np.stack([np.full(6, -2.0), np.full(6, 2.0)])
    policy.normalizer.fit({"joint_pos": span, "action": span})
    return policy.eval()


@pytest.fixture(scope="module")
def few_step_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampler")
    source = ckpt.save_checkpoint(root / "ddim10", x0_policy())
    return write_sampler_checkpoint(source, root / "ddim2", 2)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_trailing_ddim_runs_one_network_evaluation_per_step_from_the_last_training_step(steps):
    policy = x0_policy()
    policy.runtime = "eager"  # count the U-Net's calls
    policy.set_sampler(steps, "trailing")
    calls = []
    policy.unet.final.register_forward_hook(lambda *_: calls.append(1))
    obs = {"joint_pos": torch.rand(1, 2, 6)}
    noise = torch.randn(1, 16, 6, generator=torch.Generator().manual_seed(2))
    action = policy.predict_action(obs, noise=noise)
    assert len(calls) == steps and policy.infer_scheduler.timesteps[0] == 99
    if steps == 1:  # one step is the network's clean-chunk prediction from pure noise at t=99, clipped
        with torch.no_grad():
            x0 = policy.unet(noise, torch.tensor([99]), policy.encode_obs(obs)).clamp(-1, 1)
        assert torch.allclose(action, policy.normalizer.unnormalize("action", x0), atol=1e-5)


def test_leading_spacing_keeps_the_previous_ddim_steps():
    policy = x0_policy()
    policy.predict_action({"joint_pos": torch.rand(1, 2, 6)})
    assert policy.infer_scheduler.timesteps.tolist() == list(range(90, -1, -10))  # 10 steps, ending at 0


def test_the_checkpoint_carries_its_sampler(tmp_path, few_step_checkpoint, capsys):
    cfg, _, meta = ckpt.read_config(few_step_checkpoint)
    assert (cfg.scheduler.inference_steps, cfg.scheduler.timestep_spacing) == (2, "trailing")
    source_meta = json.loads((few_step_checkpoint.parent / "ddim10" / "config.json").read_text())
    assert meta["sha256"] == source_meta["sha256"]  # the same weights
    policy = ckpt.load_policy(few_step_checkpoint, PROFILE)
    assert policy.inference_steps == 2 and policy.infer_scheduler.config.timestep_spacing == "trailing"
    assert not (few_step_checkpoint / "sim_validation.json").exists()  # a new sampler needs its own sign-off

    source = few_step_checkpoint.parent / "ddim10"
    for argv, message in (
        ([str(source), "--out", str(source)], "give a new folder"),
        ([str(source), "--out", str(few_step_checkpoint)], "already exists"),
        ([str(source), "--out", str(tmp_path / "x"), "--steps", "0"], "use 1 to 100"),
        ([str(source)], "nothing to do"),
        ([str(tmp_path / "missing"), "--out", str(tmp_path / "y")], "missing"),
    ):
        capsys.readouterr()
        assert cli_main(["train", "sampler", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
    assert cli_main(["train", "sampler", str(source), "--out", str(tmp_path / "one"), "--steps", "1"]) == 0
    assert ckpt.read_config(tmp_path / "one")[0].scheduler.inference_steps == 1


def test_compare_samplers_rolls_both_out_on_the_same_seeds(tmp_path, few_step_checkpoint):
    result = compare_samplers(few_step_checkpoint, short_pick_task(tmp_path), "so101", episodes=2, progress=False)
    assert (result.reference_label, result.candidate_label) == ("DDIM 10 leading", "DDIM 2 trailing")
    assert [e.seed for e in result.reference.episodes] == [e.seed for e in result.candidate.episodes] == [1000, 1001]
    lo, _ = result.reference.ci95
    assert result.within == (result.candidate.success_rate >= lo)
    assert ("PASS" if result.within else "FAIL") in result.summary()


def test_policy_server_acts_with_a_few_step_checkpoint(ros, spawn, few_step_checkpoint):
    """A real policy_server process loads the few-step checkpoint with no sampler flag and publishes chunks."""
    contract = Contract(PROFILE)
    chunks = ros.collect(contract.joint_trajectory.type, contract.joint_trajectory.name)
    proc = spawn(["policy_server", "--ros-args", "-p", "robot:=so101", "-p", f"policy:={few_step_checkpoint}"],
                 env=ros_environment())
    joints = JointStatePublisher(ros)
    try:
        wait_for(lambda: len(chunks) >= 3, 60, "three action chunks from the few-step policy")
    finally:
        joints.stop()
    for _, msg in chunks:
        assert list(msg.joint_names) == PROFILE.all_joint_names
        assert len(msg.points) > 0 and all(np.isfinite(p.positions).all() for p in msg.points)
    time.sleep(0.2)
    assert proc.poll() is None
