"""HIL actor and learner as real processes over real DDS: hostile payloads, restarts of either side,
interventions reaching both buffers with the teleop action, and hil.launch.xml end to end on the twin."""

import os
import pickle
import signal
import threading
import time

import msgpack
import numpy as np
import pytest
import yaml
from conftest import wait_for
from std_msgs.msg import Bool, Float64MultiArray, UInt8MultiArray

from robot_stack.contract import Contract
from robot_stack.launcher import LaunchRunner
from robot_stack.policies.hil import transport
from robot_stack.policies.hil.buffer import ReplayBuffer
from robot_stack.policies.hil.config import load_hil_config
from robot_stack.policies.hil.spaces import RLSpace
from robot_stack.policies.hil.transport import Transition, TransitionBatch
from robot_stack.profile import load_profile
from robot_stack.resources import share_dir

PROFILE = load_profile("so101")
CONTRACT = Contract(PROFILE)
SMALL = {"warmup_steps": 10, "weights_period_s": 0.5,
         "agent": {"hidden_dims": [32, 32], "batch_size": 32, "utd_ratio": 2}}


@pytest.fixture
def run_config(tmp_path):
    data = yaml.safe_load((share_dir() / "config" / "hil" / "pick_cube_state.yaml").read_text())
    data = {**data, **SMALL, "agent": {**data.get("agent", {}), **SMALL["agent"]}}
    path = tmp_path / "hil.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, RLSpace(PROFILE, "pick_cube", load_hil_config(str(path)))


class Output:
    """Lines of a process's output, read in the background."""

    def __init__(self, proc) -> None:
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def find(self, text: str) -> str:
        return next((line for line in self.lines if text in line), "")


def decoded(ros, kind: str) -> list:
    """Decoded messages of a HIL topic, newest last."""
    out: list = []
    ros.node.create_subscription(UInt8MultiArray, transport.TOPICS[kind],
                                 lambda m: out.append(transport.decode(bytes(m.data), kind)), transport.qos(kind))
    return out


def learner_cmd(run_dir, config) -> list[str]:
    return ["hil_learner", "--ros-args", "-p", f"run_dir:={run_dir}", "-p", f"config:={config}",
            "-p", "progress:=false", "-p", "checkpoint_period_s:=1.0"]


def actor_cmd(config, *params: str) -> list[str]:
    cmd = ["hil_actor", "--ros-args", "-p", f"config:={config}", "-p", "episode_seconds:=2.0"]
    for p in params:
        cmd += ["-p", p]
    return cmd


class Exploit:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_learner_rejects_hostile_payloads_and_keeps_running(ros, spawn, tmp_path, run_config):
    config, space = run_config
    learner = spawn(learner_cmd(tmp_path / "run", config))
    out = Output(learner)
    status = decoded(ros, "learner_status")
    pub = ros.node.create_publisher(UInt8MultiArray, transport.TOPICS["transitions"], transport.qos("transitions"))
    wait_for(lambda: pub.get_subscription_count() > 0 and status, 60, "the learner")
    marker = tmp_path / "pwned"

    def batch(first: int, n: int = 2, reward: float = 0.0) -> TransitionBatch:
        obs = np.zeros(space.obs_dim, np.float32)
        items = [Transition(obs, np.zeros(space.act_dim, np.float32), reward, obs, False, False, False, 0, first + i)
                 for i in range(n)]
        return TransitionBatch("evil", "session1", 0, first, items)

    nan_reward = msgpack.unpackb(transport.encode(batch(0)), raw=False)
    nan_reward["items"][0]["reward"] = float("nan")
    wrong_shape = transport.encode(TransitionBatch("evil", "s", 0, 0, [Transition(
        np.zeros(space.obs_dim + 1, np.float32), np.zeros(space.act_dim, np.float32), 0.0,
        np.zeros(space.obs_dim + 1, np.float32), False, False, False, 0, 0)]))
    hostile = [
        pickle.dumps(Exploit(marker)),  # would run `touch` if anything unpickled it
        pickle.dumps(batch(0)),
        b"",
        msgpack.packb({"kind": "weights", "v": 1}),
        msgpack.packb(nan_reward, use_bin_type=True),
        wrong_shape,
        b"\x81\xa4kind\xdd\xff\xff\xff\xff",  # an array header claiming 4 billion entries
    ]
    for payload in hostile:
        pub.publish(transport.to_msg(payload))
    wait_for(lambda: out.count("rejected a message on hil/transitions") >= len(hostile), 30, "every rejection logged")
    reasons = [line for line in out.lines if "rejected a message" in line]
    assert any("not a msgpack message" in r for r in reasons)
    assert any("reward: expected a finite number" in r for r in reasons)
    assert any(f"obs.shape: expected [{space.obs_dim}]" in r for r in reasons)
    assert any("expected a transitions message, got weights" in r for r in reasons)
    # still alive, and a valid batch afterwards is accepted
    pub.publish(transport.to_msg(transport.encode(batch(0, n=3))))
    wait_for(lambda: status[-1].acks.get("session1") == 2 and status[-1].transitions == 3, 30, "the valid batch")
    assert learner.poll() is None
    assert not marker.exists()
    assert out.count("Traceback") == 0


def test_restarts_and_interventions(ros, spawn, tmp_path, run_config):
    """Kill the learner (SIGKILL): the actor keeps acting and buffering, the restarted learner resumes from its
    checkpoint and gets everything; kill the actor: the restarted one gets the weights at once. Human commands
    during an intervention reach both buffers as the policy-space action of the commanded targets."""
    config, space = run_config
    run_dir = tmp_path / "run"
    status, stats = decoded(ros, "learner_status"), decoded(ros, "actor_stats")
    spawn(["twin_node", "--ros-args", "-p", "cameras:=none"])
    learner = spawn(learner_cmd(run_dir, config))
    actor = spawn(actor_cmd(config, "actor_id:=arm1"))
    actor_out = Output(actor)
    wait_for(lambda: actor_out.count("weights v1") and stats and stats[-1].steps >= 15, 90, "the actor stepping")

    # a human takes over for 2 s with a fixed command
    flag = ros.node.create_publisher(Bool, CONTRACT.intervention.name, CONTRACT.intervention.qos)
    arm = ros.node.create_publisher(Float64MultiArray, CONTRACT.joint_commands.name, CONTRACT.joint_commands.qos)
    grip = ros.node.create_publisher(Float64MultiArray, CONTRACT.gripper_commands.name, CONTRACT.gripper_commands.qos)
    command = np.array(PROFILE.sim.home, dtype=float)
    command[:5] += np.array([0.25, -0.15, 0.1, 0.05, -0.2])
    g = PROFILE.gripper
    command[5] = g.open + 0.3 * (g.closed - g.open)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        flag.publish(Bool(data=True))
        arm.publish(Float64MultiArray(data=list(command[:5])))
        grip.publish(Float64MultiArray(data=[command[5]]))
        time.sleep(0.05)
    flag.publish(Bool(data=False))
    wait_for(lambda: stats[-1].intervention_steps >= 15, 10, "intervention steps counted by the actor")

    # learner crash: the actor keeps going and buffers
    wait_for(lambda: status and status[-1].durable.get(stats[-1].session, -1) > 0, 20, "a checkpoint")
    learner.send_signal(signal.SIGKILL)
    learner.wait()
    steps_at_kill = stats[-1].steps
    wait_for(lambda: stats[-1].steps >= steps_at_kill + 20, 20, "the actor acting without a learner")
    assert actor.poll() is None and stats[-1].outbox > 20
    session1 = stats[-1].session
    restarted_at = time.monotonic()
    learner = spawn(learner_cmd(run_dir, config))
    learner_out = Output(learner)
    wait_for(lambda: learner_out.find("resumed at"), 60, "the learner resuming")
    n_stats = len(stats)
    wait_for(lambda: len(stats) > n_stats + 1 and status[-1].acks.get(session1, -1) + 1 >= stats[n_stats + 1].steps,
             30, "the learner catching up with what the actor did meanwhile")
    assert "resumed at 0 transitions" not in learner_out.find("resumed at")

    # actor crash: a new actor gets the latched weights at once and its transitions flow
    actor.send_signal(signal.SIGKILL)
    actor.wait()
    t0 = time.monotonic()
    actor = spawn(actor_cmd(config, "actor_id:=arm1", "max_episodes:=2"))
    actor_out = Output(actor)
    wait_for(lambda: actor_out.find("weights v"), 60, "weights at the restarted actor")
    first_weights = time.monotonic() - t0
    actor.wait(timeout=60)  # two episodes, then it exits once the learner has checkpointed them all
    assert actor.returncode == 0, actor_out.lines[-5:]
    session2 = next(s.session for s in reversed(stats) if s.session != session1)
    last2 = [s for s in stats if s.session == session2][-1]
    final = status[-1]
    assert final.durable[session2] + 1 == last2.steps >= 2  # every step of the new actor, exactly once
    assert final.transitions == sum(a + 1 for a in final.acks.values())  # no duplicates over all sessions
    assert time.monotonic() - restarted_at < 120 and first_weights < 30

    # the intervention reached both buffers with the commanded targets in the policy's action space
    learner.send_signal(signal.SIGINT)
    learner.wait(timeout=30)
    online = ReplayBuffer.load(run_dir / "learner" / "online.zarr").ordered()
    demo = ReplayBuffer.load(run_dir / "learner" / "demo.zarr").ordered()
    flagged = online["intervention"]
    assert 15 <= flagged.sum() <= 25, flagged.sum()
    assert len(demo["obs"]) == flagged.sum() and demo["intervention"].all()
    np.testing.assert_array_equal(demo["action"], online["action"][flagged])
    q = space.lower + (online["obs"][flagged, : space.n_all] + 1) / 2 * (space.upper - space.lower)
    expected = np.clip((command[:5] - q[:, :5]) / space.max_step, -1, 1)
    arm_ok = np.abs(online["action"][flagged][:, :5] - expected).max(axis=1) < 1e-3
    assert arm_ok.sum() >= flagged.sum() - 1, (online["action"][flagged][:, :5], expected)  # the takeover step may lag
    np.testing.assert_allclose(online["action"][flagged][:, 5], 2 * (command[5] - g.closed) / (g.open - g.closed) - 1,
                               atol=1e-4)


def test_hil_launch_on_the_twin_with_the_scripted_intervener(ros, tmp_path, run_config):
    from robot_stack.data import EpisodeStore
    from robot_stack.policies.hil.progress import read_metrics
    from robot_stack.sim.experts import make_expert
    from robot_stack.sim.gym_env import TwinEnv

    config, space = run_config
    demos = tmp_path / "demos.zarr"  # two scripted demos in the recorder's layout
    env, store = TwinEnv("so101", "pick_cube", seed=3), EpisodeStore(demos, "a")
    expert = make_expert(env.profile, env.task_config)
    for seed in (3, 4):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        steps: dict[str, list] = {k: [] for k in ("joint_pos", "joint_vel", "ee_pose", "object_state", "action")}
        for _ in range(env.max_steps):
            action = expert.act({k: np.asarray(v, dtype=float) for k, v in obs.items()})
            for k in ("joint_pos", "joint_vel", "ee_pose", "object_state"):
                steps[k].append(obs[k])
            steps["action"].append(action)
            obs, _, success, _, _ = env.step(action)
            if success:
                break
        store.append_episode({k: np.asarray(v, np.float32) for k, v in steps.items()}, success=bool(success),
                             task="pick_cube")
    env.close()
    stats = decoded(ros, "actor_stats")
    run_dir = tmp_path / "run"
    log = tmp_path / "launch.log"
    args = {"device": "expert", "run_dir": str(run_dir), "demos": str(demos), "config": str(config),
            "max_episodes": "3", "episode_seconds": "3.0", "intervene_probability": "0.2", "intervene_steps": "5",
            "checkpoint_period_s": "2.0", "actor_id": "twin1"}
    with open(log, "w") as f:
        runner = LaunchRunner(share_dir() / "launch" / "hil.launch.xml", args, stdout=f, stderr=f).start()
        try:
            code = None
            deadline = time.monotonic() + 150
            while code is None and time.monotonic() < deadline:
                code = runner.wait(0.5)
        finally:
            if code is None:
                runner.stop()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "demo buffer:" in text and "weights v1" in text, text[-3000:]
    assert "intervening for 5 steps" in text
    episodes = read_metrics(run_dir / "metrics.jsonl")
    assert len(episodes) == 3 and sum(e.intervention_steps for e in episodes) > 0
    assert stats and stats[-1].episodes == 3 and stats[-1].weights_version >= 2  # weights after updates arrived
    online = ReplayBuffer.load(run_dir / "learner" / "online.zarr")
    assert len(online) == sum(e.length for e in episodes) == stats[-1].steps
    assert online.intervention_count == stats[-1].intervention_steps > 0
    assert (run_dir / "episodes.png").stat().st_size > 10_000
    # the CLI on the same run and demos
    from robot_stack.cli import main

    assert main(["hil", "plot", str(run_dir), "--out", str(tmp_path / "plot.png")]) == 0
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    assert main(["hil", "classifier", "--data", str(demos), "--out", str(tmp_path / "clf"), "--epochs", "3"]) == 0
    assert (tmp_path / "clf" / "classifier.safetensors").is_file()
    assert main(["hil", "plot", str(tmp_path)]) == 2  # no metrics there: one-line error


def test_learner_checkpoints_are_crash_consistent(tmp_path, run_config):
    """A learner dying inside a checkpoint (after the agent and buffer writes, before state.json) resumes from
    the previous complete one; one that never committed a checkpoint starts afresh."""
    import rclpy
    from rclpy.parameter import Parameter

    from robot_stack.policies.hil.learner_node import HilLearner

    config, space = run_config
    run_dir = tmp_path / "run"
    ctx = rclpy.Context()
    rclpy.init(context=ctx)

    def learner() -> HilLearner:
        params = {"run_dir": str(run_dir), "config": str(config), "progress": False}
        return HilLearner(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])

    def feed(node: HilLearner, first: int, n: int) -> None:
        rng = np.random.default_rng(first)
        items = [Transition(rng.normal(size=space.obs_dim).astype(np.float32), np.zeros(space.act_dim, np.float32),
                            0.0, rng.normal(size=space.obs_dim).astype(np.float32), False, i == n - 1, i % 3 == 0,
                            first // 10, i) for i in range(n)]
        node._on_transitions(TransitionBatch("arm", "s1", first, first, items))

    try:
        a = learner()
        feed(a, 0, 30)
        a.checkpoint()
        feed(a, 30, 20)
        a.online.save(a.ck_dir / "online.zarr")  # the next checkpoint got this far ...
        a.demo.save(a.ck_dir / "demo.zarr")
        (a.ck_dir / "agent_b").mkdir()
        (a.ck_dir / "agent_b" / "agent.safetensors").write_bytes(b"half a file")  # ... and died
        a.destroy_node()
        b = learner()
        assert b.resumed and (b.env_steps, len(b.online), len(b.demo), b.inbox.acks) == (30, 30, 10, {"s1": 29})
        assert len(b.episodes) == 1
        feed(b, 30, 20)  # the actor resends what came after the checkpoint
        assert (b.env_steps, len(b.online), len(b.demo), len(b.episodes)) == (50, 50, 17, 2)
        b.checkpoint()
        b.destroy_node()
        c = learner()
        np.testing.assert_array_equal(c.online.ordered()["obs"], b.online.ordered()["obs"])
        assert c.agent_dir == "agent_b" and c.updates == b.updates
        c.destroy_node()
        (run_dir / "learner" / "state.json").unlink()  # as if no checkpoint had ever committed
        d = learner()
        assert not d.resumed and len(d.online) == 0 and (run_dir / "learner.uncommitted" / "online.zarr").is_dir()
        d.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_learner_device_parameter(tmp_path, run_config, monkeypatch):
    """device:= picks where the learner learns (recorded in config.yaml); the weights it ships stay CPU arrays;
    a GPU torch cannot see is one line before anything is written."""
    import rclpy
    import torch
    from rclpy.parameter import Parameter

    from robot_stack.errors import UserError
    from robot_stack.policies.hil.learner_node import HilLearner

    config, _ = run_config
    ctx = rclpy.Context()
    rclpy.init(context=ctx)

    def learner(run_dir, device: str) -> HilLearner:
        params = {"run_dir": str(run_dir), "config": str(config), "progress": False, "device": device}
        return HilLearner(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])

    try:
        node = learner(tmp_path / "cpu", "cpu")
        assert node.agent.device == torch.device("cpu")
        assert yaml.safe_load((tmp_path / "cpu" / "config.yaml").read_text())["device"] == "cpu"
        assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in node.agent.actor_state().values())
        node.destroy_node()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(UserError, match=r"^hil device cuda: no CUDA GPU visible to torch \(use device: cpu\)$"):
            learner(tmp_path / "gpu", "cuda")
        assert not (tmp_path / "gpu").exists()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_operator_episode_buttons(ros, spawn, tmp_path, run_config):
    """Hardware-style episodes: the teleop episode keys (the recorder's services) start an episode and end it
    as a success (save) or a failure (discard)."""
    from std_srvs.srv import Trigger

    from robot_stack.policies.hil.progress import read_metrics

    config, _ = run_config
    run_dir = tmp_path / "run"
    stats = decoded(ros, "actor_stats")
    spawn(["twin_node", "--ros-args", "-p", "cameras:=none"])
    learner = spawn(learner_cmd(run_dir, config))
    spawn(actor_cmd(config, "episodes:=operator", "reward:=twin", "episode_seconds:=30.0"))
    start, save, discard = (CONTRACT.episode_services[n].name for n in ("start", "save", "discard"))
    wait_for(lambda: stats and stats[-1].weights_version >= 1, 60, "the actor with weights")
    assert not ros.call(Trigger, save, timeout=30).success  # nothing running yet
    assert ros.call(Trigger, start).success
    wait_for(lambda: stats[-1].steps >= 5, 20, "steps")
    reply = ros.call(Trigger, save)
    assert reply.success and "success" in reply.message
    wait_for(lambda: stats[-1].episodes == 1, 10, "the episode to end")
    assert stats[-1].successes == 1 and not ros.call(Trigger, discard).success
    before = stats[-1].steps
    assert ros.call(Trigger, start).success
    wait_for(lambda: stats[-1].steps >= before + 3, 10, "the second episode stepping")
    assert ros.call(Trigger, discard).success
    wait_for(lambda: stats[-1].episodes == 2, 10, "the second episode to end")
    wait_for(lambda: sum(1 for _ in read_metrics(run_dir / "metrics.jsonl")) == 2, 10, "both episodes at the learner")
    first, second = read_metrics(run_dir / "metrics.jsonl")
    assert first.success and first.ret == 1.0 and not second.success and second.length >= 3
    assert learner.poll() is None
