"""Human in the loop during deployment: a scripted intervener takes over mid-episode through the real
teleop topic; the policy yields, the arm follows the intervener, control returns without a jump, and
the recorded episode carries the intervention mask."""

import time

import numpy as np
import pytest
import torch
from conftest import wait_for
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.data.store import EpisodeStore
from robot_stack.launcher import LaunchRunner
from robot_stack.policies.diffusion.checkpoint import save_checkpoint
from robot_stack.policies.diffusion.config import ShapeMeta, preset
from robot_stack.policies.diffusion.policy import DiffusionPolicy
from robot_stack.profile import load_profile
from robot_stack.resources import share_dir

PROFILE = load_profile("so101")
CONTRACT = Contract(PROFILE)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small policy that holds the home pose (trained for a few steps on constant data)."""
    torch.manual_seed(0)
    home = np.array(PROFILE.sim.home, dtype=np.float32)
    shape = ShapeMeta(robot="so101", joint_names=tuple(PROFILE.all_joint_names), lowdim_dims={"joint_pos": 6},
                      action_dim=6)
    policy = DiffusionPolicy(preset("tiny"), shape)
    span = np.stack([home - 0.5, home + 0.5])
    policy.normalizer.fit({"joint_pos": span, "action": span})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "policy", policy)


def test_intervener_takes_over_and_gives_back_smoothly(ros, spawn, checkpoint, tmp_path):
    states = ros.collect(JointState, CONTRACT.joint_states.name, CONTRACT.joint_states.qos)
    flags = ros.collect(Bool, CONTRACT.intervention.name)
    commands = ros.collect(Float64MultiArray, CONTRACT.joint_commands.name)
    chunks = ros.collect(JointTrajectory, CONTRACT.joint_trajectory.name)
    store = tmp_path / "hil.zarr"
    log = open(tmp_path / "launch.log", "w")
    args = {"policy": str(checkpoint), "cameras": "none", "task": "pick_cube"}
    with LaunchRunner(share_dir() / "launch" / "deploy.launch.xml", args, stdout=log, stderr=log):
        spawn(["recorder_node", "--ros-args", "-p", "robot:=so101", "-p", f"store:={store}", "-p", "task:=pick_cube",
               "-p", "record_rate_hz:=10.0", "-p", "progress:=false", "-p", "cameras:=none"])
        wait_for(lambda: len(chunks) >= 2, 90, "the policy driving the twin")
        wait_for(lambda: ros.call(Trigger, CONTRACT.episode_services["start"].name, timeout=30).success, 30,
                 "the recorder starting an episode")
        spawn(["expert_node", "--ros-args", "-p", "robot:=so101", "-p", "task:=pick_cube",
               "-p", "intervene_probability:=1.0", "-p", "intervene_steps:=25", "-p", "intervene_budget:=25"])
        wait_for(lambda: any(m.data for _, m in flags), 30, "the intervener taking over")
        took_over = next(t for t, m in flags if m.data)
        wait_for(lambda: flags[-1][1].data is False and flags[-1][0] > took_over + 1.0, 30, "control given back")
        gave_back = next(t for t, m in flags if t > took_over and not m.data)
        wait_for(lambda: any(t > gave_back + 0.3 for t, _ in chunks), 30, "the policy re-planning")
        time.sleep(1.0)
        reply = ros.call(Trigger, CONTRACT.episode_services["save"].name, timeout=60)
        assert reply.success, reply.message

    # the policy yields: no chunk published while the human holds control (one may be in flight)
    during = [t for t, _ in chunks if took_over + 0.3 < t < gave_back]
    assert len(during) <= 1, during
    # the arm follows the intervener: at hand-back it is near the intervener's last command
    last_command = np.array([m.data for t, m in commands if t <= gave_back][-1])
    at_handback = [convert.joint_state_arrays(m, PROFILE.all_joint_names)[0] for t, m in states if t <= gave_back][-1]
    assert np.abs(at_handback[:5] - last_command).max() < 0.1, (at_handback, last_command)
    # no jump anywhere, hand-back included: every control tick moves a joint at most one velocity-limited step
    t = np.array([convert.to_sec(m.header.stamp) for _, m in states])
    q = np.array([convert.joint_state_arrays(m, PROFILE.all_joint_names)[0][:5] for _, m in states])
    ticks = np.maximum(1, np.round(np.diff(t) / PROFILE.control_period))
    step = np.abs(np.diff(q, axis=0)) / ticks[:, None]
    assert (step <= 2.0 * PROFILE.velocity_limits * PROFILE.control_period).all(), step.max(axis=0)  # jitter: 2x
    # the recorded episode marks the takeover
    episode = EpisodeStore(store).episode(0)
    mask = episode["intervention"].astype(bool)
    assert 10 <= mask.sum() <= 40, mask.astype(int)
    first, last = np.flatnonzero(mask)[[0, -1]]
    assert mask[first:last + 1].all(), "one contiguous takeover"
    assert not mask[:first].any() and not mask[last + 1:].any()
