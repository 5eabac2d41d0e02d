"""policy_server in a real process: timestamped chunks over DDS, silence, intervention, sim sign-off."""

import json
import threading
import time

import numpy as np
import pytest
import torch
from conftest import wait_for
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.errors import UserError
from robot_stack.policies.chunks import ActionChunks
from robot_stack.policies.diffusion.checkpoint import save_checkpoint
from robot_stack.policies.diffusion.config import ShapeMeta, preset
from robot_stack.policies.diffusion.policy import DiffusionPolicy
from robot_stack.policies.validation import ValidationRecord, check_validated, policy_hash, wilson_interval
from robot_stack.profile import load_profile
from robot_stack.resources import ros_environment

PROFILE = load_profile("so101")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    shape = ShapeMeta(robot="so101", joint_names=tuple(PROFILE.all_joint_names), lowdim_dims={"joint_pos": 6},
                      action_dim=6)
    policy = DiffusionPolicy(preset("tiny"), shape)
    span = np.stack([np.full(6, -1.0), np.full(6, 1.0)])
    policy.normalizer.fit({"joint_pos": span, "action": span})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "policy", policy)


class JointStatePublisher:
    def __init__(self, ros, rate=100.0):
        contract = Contract(PROFILE)
        self.pub = contract.publisher(ros.node, contract.joint_states)
        self.ros, self.rate, self.running = ros, rate, True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            now = self.ros.node.get_clock().now().nanoseconds * 1e-9
            self.pub.publish(convert.make_joint_state(PROFILE.all_joint_names, np.zeros(6), np.zeros(6), np.zeros(6),
                                                      convert.to_stamp(now)))
            time.sleep(1.0 / self.rate)

    def stop(self):
        self.running = False
        self.thread.join()


def start_server(spawn, checkpoint, *extra):
    return spawn(["policy_server", "--ros-args", "-p", "robot:=so101", "-p", f"policy:={checkpoint}",
                  "-p", "inference_steps:=4", *extra], env=ros_environment())


def test_server_publishes_future_chunks_and_yields_to_the_operator(ros, spawn, checkpoint):
    contract = Contract(PROFILE)
    chunks = ros.collect(JointTrajectory, contract.joint_trajectory.name)
    intervention = contract.publisher(ros.node, contract.intervention)
    proc = start_server(spawn, checkpoint)
    time.sleep(3.0)
    assert not chunks, "published without observations"
    joints = JointStatePublisher(ros)
    try:
        wait_for(lambda: len(chunks) >= 3, 60, "three action chunks")
        for _, msg in chunks:
            stamp = convert.to_sec(msg.header.stamp)
            first = msg.points[0].time_from_start.sec + msg.points[0].time_from_start.nanosec * 1e-9
            assert first > 0 and stamp + first > stamp
            assert list(msg.joint_names) == PROFILE.all_joint_names
            assert all(np.isfinite(p.positions).all() for p in msg.points)
        now = ros.node.get_clock().now().nanoseconds * 1e-9
        assert abs(convert.to_sec(chunks[-1][1].header.stamp) - now) < 2.0  # stamped on the shared clock
        for _ in range(5):
            intervention.publish(Bool(data=True))
            time.sleep(0.05)
        time.sleep(0.5)
        count = len(chunks)
        time.sleep(1.5)
        assert len(chunks) == count, "the policy kept publishing during an intervention"
        intervention.publish(Bool(data=False))
        wait_for(lambda: len(chunks) > count, 10, "chunks after control returned")
    finally:
        joints.stop()
    count = len(chunks)
    time.sleep(1.5)
    assert len(chunks) <= count + 1, "published while joint_states was silent"
    assert proc.poll() is None


def test_chunks_drop_past_steps_and_blend_without_jumps():
    chunks = ActionChunks(blend_steps=3)
    t = np.arange(8) * 0.1
    times, actions = chunks.add(t, np.zeros((8, 1)), now=0.25)
    assert np.allclose(times, t[3:]) and chunks.dropped == 3
    times, actions = chunks.add(t + 0.4, np.ones((8, 1)), now=0.45)
    assert np.all(np.diff(actions[:, 0]) >= 0) and actions[0, 0] < 0.5  # fades in, never jumps to the new chunk


def test_ros_eval_renders_the_cameras_the_policy_observes(tmp_path, checkpoint):
    from robot_stack.policies.diffusion.config import replace
    from robot_stack.policies.evaluate import policy_cameras

    assert policy_cameras(checkpoint) == "none"
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos",), "image_keys": ("front_image",)})
    shape = ShapeMeta(robot="so101", joint_names=tuple(PROFILE.all_joint_names), lowdim_dims={"joint_pos": 6},
                      action_dim=6, image_keys=("front_image",))
    policy = DiffusionPolicy(cfg, shape)
    span = np.stack([np.full(6, -1.0), np.full(6, 1.0)])
    policy.normalizer.fit({"joint_pos": span, "action": span})
    assert policy_cameras(save_checkpoint(tmp_path / "image_policy", policy)) == "front"


def test_history_restarts_after_a_takeover(ros):
    """After ``restart`` (control back from the operator) no sample from before it enters the history."""
    from robot_stack.policies.observations import ObservationHistory, subscribe

    contract = Contract(PROFILE)
    streams = ObservationHistory(["joint_pos"])
    subscribe(ros.node, contract, streams)
    pub = contract.publisher(ros.node, contract.joint_states)
    zeros = np.zeros(6)

    def publish(stamp, value):
        pub.publish(convert.make_joint_state(PROFILE.all_joint_names, np.full(6, value), zeros, zeros,
                                             convert.to_stamp(stamp)))

    t0 = 1000.0
    wait_for(lambda: (publish(t0, 0.0), streams.newest_common_stamp())[1] is not None, 10, "discovery")
    publish(t0 + 0.1, 0.0)
    wait_for(lambda: streams.newest_common_stamp() == t0 + 0.1, 5, "the state before the reset")
    assert streams.sample([t0 + 0.1, t0 + 0.1], 0.2)["joint_pos"][:, 0].tolist() == [0.0, 0.0]
    streams.restart(since=t0 + 0.15)
    assert streams.newest_common_stamp() is None
    publish(t0 + 0.12, 0.0)  # captured before the restart, delivered after it: ignored
    publish(t0 + 0.2, 1.0)
    wait_for(lambda: streams.newest_common_stamp() == t0 + 0.2, 5, "the state after the reset")
    obs = streams.sample([t0 + 0.1, t0 + 0.2], tolerance=0.2)
    assert obs["joint_pos"][:, 0].tolist() == [1.0, 1.0]  # padded with the first new sample, as at an episode start


def test_sim_validation_gate(tmp_path, checkpoint):
    with pytest.raises(UserError, match="no sim validation record"):
        check_validated(checkpoint)
    lo, hi = wilson_interval(45, 50)
    record = ValidationRecord(policy_hash(checkpoint), "pick_cube", "so101", 50, 45, 0.9, (lo, hi), 0.8, True)
    record.save(checkpoint)
    assert check_validated(checkpoint, "pick_cube").success_rate == 0.9
    with pytest.raises(UserError, match="validated on task 'pick_cube', not 'push'"):
        check_validated(checkpoint, "push")
    data = json.loads((checkpoint / "sim_validation.json").read_text())
    data["policy_sha256"] = "0" * 64
    (checkpoint / "sim_validation.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="weights changed"):
        check_validated(checkpoint)
    (checkpoint / "sim_validation.json").unlink()


def test_server_refuses_unvalidated_checkpoint_in_one_line(spawn, checkpoint):
    proc = start_server(spawn, checkpoint, "-p", "require_sim_validation:=true")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    errors = [line for line in out.splitlines() if "error" in line]
    assert errors and "no sim validation record" in errors[0] and "Traceback" not in out


def test_server_refuses_a_sign_off_made_with_another_runtime_configuration(spawn, ros, checkpoint):
    """The sign-off names the runtime configuration it validated; deploying with another one is refused."""
    from robot_stack.policies.diffusion.checkpoint import load_policy
    from robot_stack.policies.runner import RuntimeConfig, runtime_record

    policy = load_policy(checkpoint, PROFILE)
    policy.inference_steps = 4  # as start_server deploys it
    record = ValidationRecord(policy_hash(checkpoint), "pick_cube", "so101", 50, 45, 0.9, (0.79, 0.96), 0.8, True,
                              runtime=runtime_record(RuntimeConfig(), policy, PROFILE))
    record.save(checkpoint)
    try:
        proc = start_server(spawn, checkpoint, "-p", "require_sim_validation:=true", "-p", "task:=pick_cube",
                            "-p", "blend_steps:=5", "-p", "inference_latency:=0.2")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 2, out
        errors = [line for line in out.splitlines() if "error" in line]
        assert errors and "another runtime configuration" in errors[0] and "Traceback" not in out
        assert "runtime.blend_steps 3 -> 5" in errors[0] and "runtime.inference_latency 0.05 -> 0.2" in errors[0]
        proc = start_server(spawn, checkpoint, "-p", "require_sim_validation:=true", "-p", "task:=pick_cube")
        topic = "/" + Contract(PROFILE).joint_trajectory.name
        wait_for(lambda: proc.poll() is not None or ros.node.count_publishers(topic) > 0, 60, "the server")
        assert proc.poll() is None, proc.communicate()[0]  # the validated configuration deploys
    finally:
        (checkpoint / "sim_validation.json").unlink()


def test_server_refuses_a_privileged_checkpoint_in_one_line(spawn, tmp_path):
    """A policy observing the simulator's ground truth is refused unless privileged:=true (deploy sim:=false)."""
    shape = ShapeMeta(robot="so101", joint_names=tuple(PROFILE.all_joint_names),
                      lowdim_dims={"joint_pos": 6, "object_state": 7}, action_dim=6)
    cfg = preset("tiny")
    cfg = type(cfg)(**{**cfg.__dict__, "obs": type(cfg.obs)(**{**cfg.obs.__dict__,
                                                               "lowdim_keys": ("joint_pos", "object_state")})})
    policy = DiffusionPolicy(cfg, shape)
    policy.normalizer.fit({"joint_pos": np.stack([-np.ones(6), np.ones(6)]),
                           "object_state": np.stack([-np.ones(7), np.ones(7)]),
                           "action": np.stack([-np.ones(6), np.ones(6)])})
    checkpoint = save_checkpoint(tmp_path / "privileged", policy)
    proc = start_server(spawn, checkpoint, "-p", "task:=pick_cube")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if "error" in line]
    assert errors and "object_state" in errors[0] and "joint_pos, joint_vel, ee_pose, front_image, wrist_image" in errors[0]
    assert "privileged:=true" in errors[0] and "Traceback" not in out


def test_a_fully_late_chunk_keeps_the_running_one():
    chunks = ActionChunks(blend_steps=3)
    t = np.arange(8) * 0.1
    chunks.add(t, np.zeros((8, 1)), now=0.0)
    times, _ = chunks.add(t, np.ones((8, 1)), now=5.0)
    assert len(times) == 0 and chunks.dropped == 9 and len(chunks.times) == 7  # t=0 was already due at now=0
    times, actions = chunks.add(t + 0.2, np.ones((8, 1)), now=0.25)
    assert len(times) and actions[0, 0] < 1.0  # still blended into the running chunk


def test_eval_over_ros_scores_episodes_through_the_deploy_launch(tmp_path, checkpoint):
    """``robot-stack eval --ros``: deploy.launch.xml (twin + policy_server) on sim time, resets between episodes."""
    from robot_stack.policies.evaluate import evaluate_over_ros
    from robot_stack.resources import share_dir

    text = (share_dir() / "config" / "tasks" / "pick_cube.yaml").read_text()
    task = tmp_path / "pick_short.yaml"
    task.write_text(text.replace("episode_seconds: 10", "episode_seconds: 2"))
    log = tmp_path / "ros_launch.log"
    report = evaluate_over_ros(checkpoint, str(task), "so101", 2, log=log)
    assert [e.seed for e in report.episodes] == [2000, 2001]
    assert all(e.steps == 20 and not e.success for e in report.episodes)  # an untrained policy, 2 s of sim time each
    text = log.read_text()
    assert "ready: obs joint_pos" in text and "operator took control" in text and "control returned" in text
