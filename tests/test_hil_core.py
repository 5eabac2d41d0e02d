"""HIL RL learning core: batches, buffers, action space, agent checkpoints, learning and the reward classifier."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from robot_stack.errors import UserError
from robot_stack.policies.hil.agent import SACAgent, resolve_device
from robot_stack.policies.hil.buffer import ReplayBuffer, mixed_batch
from robot_stack.policies.hil.config import AgentConfig, load_hil_config
from robot_stack.policies.hil.loop import Trainer
from robot_stack.policies.hil.spaces import RLSpace

torch.set_num_threads(1)


def filled(n: int, marker: float, obs_dim: int = 3, act_dim: int = 2) -> ReplayBuffer:
    buf = ReplayBuffer(max(n, 1), obs_dim, act_dim)
    for _ in range(n):
        buf.add(np.full(obs_dim, marker), np.zeros(act_dim), 0.0, np.full(obs_dim, marker), False)
    return buf


# -- batches -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [256, 255, 1, 7])
@pytest.mark.parametrize("ratio", [0.5, 0.25, 0.0, 1.0])
def test_mixed_batch_composition(batch_size, ratio):
    demo, online = filled(10, 0.0), filled(1000, 1.0)
    rng = np.random.default_rng(0)
    batch = mixed_batch(demo, online, batch_size, ratio, rng)
    n_demo = int((batch["obs"][:, 0] == 0.0).sum())
    assert len(batch["obs"]) == batch_size
    assert abs(n_demo - batch_size * ratio) <= 1 if ratio == 0.5 else n_demo == round(batch_size * ratio)


def test_mixed_batch_with_an_empty_buffer():
    rng = np.random.default_rng(0)
    only_demo = mixed_batch(filled(5, 0.0), filled(0, 1.0), 64, 0.5, rng)
    assert (only_demo["obs"][:, 0] == 0.0).all() and len(only_demo["obs"]) == 64
    only_online = mixed_batch(filled(0, 0.0), filled(5, 1.0), 64, 0.5, rng)
    assert (only_online["obs"][:, 0] == 1.0).all() and len(only_online["obs"]) == 64
    with pytest.raises(ValueError):
        mixed_batch(filled(0, 0.0), filled(0, 1.0), 64, 0.5, rng)


# -- action space ------------------------------------------------------------------------------------
@pytest.mark.parametrize("robot", ["so101", "panda"])
@pytest.mark.parametrize("discrete", [False, True])
def test_from_target_round_trip(robot, discrete):
    cfg = load_hil_config(robot=robot, agent={"gripper_critic": discrete})
    space = RLSpace(robot, "pick_cube", cfg)
    rng = np.random.default_rng(1)
    g = space.profile.gripper
    for _ in range(200):
        current = rng.uniform(space.lower + 0.2, space.upper - 0.2)
        target = current.copy()
        target[: space.n_arm] += rng.uniform(-1, 1, space.n_arm) * space.max_step
        target[-1] = rng.choice([g.open, g.closed]) if discrete else rng.uniform(min(g.open, g.closed), max(g.open, g.closed))
        previous = current.copy()
        previous[-1] = rng.choice([g.open, g.closed])
        action = space.from_target(target, current, previous)
        assert action.shape == (space.act_dim,) and np.all(np.abs(action) <= 1)
        np.testing.assert_allclose(space.to_target(action, current, previous), target, atol=1e-5)
    # beyond one step's bound: clipped to the bound, in the direction of the command
    far = current.copy()
    far[0] += 5 * space.max_step[0]
    action = space.from_target(far, current, previous)
    assert action[0] == 1.0
    assert space.to_target(action, current, previous)[0] == pytest.approx(current[0] + space.max_step[0])


def test_observation_vector():
    from robot_stack.sim.gym_env import TwinEnv

    cfg = load_hil_config(robot="panda")
    env = TwinEnv("panda", "pick_cube")
    obs, _ = env.reset(seed=3)
    space = RLSpace(env.profile, "pick_cube", cfg)
    vec = space.observation(obs)
    assert vec.dtype == np.float32 and vec.shape == (space.obs_dim,) and np.all(np.isfinite(vec))
    np.testing.assert_allclose(vec[-3:], 10 * (obs["object_state"][:3] - obs["ee_pose"][:3]), rtol=1e-5)
    with pytest.raises(UserError, match="object_state"):
        space.observation({k: v for k, v in obs.items() if k != "object_state"})
    env.close()


def test_config_errors_are_one_line():
    with pytest.raises(UserError, match="agent: n_critics"):
        load_hil_config(agent={"n_critics": 1})
    with pytest.raises(UserError, match="agent.bogus: unknown key"):
        load_hil_config(agent={"bogus": 1})


# -- interventions in the loop -------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["pick_cube", "pick_cube_wide"])
def test_interventions_land_in_both_buffers_in_the_policy_action_space(task):
    cfg = load_hil_config(robot="panda", task=task, env_steps=60, warmup_steps=10**6, demos=1, eval_episodes=0,
                          intervener={"probability": 0.5, "steps": 8, "patience": 0})
    records = []
    trainer = Trainer(cfg, progress=False, on_step=records.append)
    result = trainer.run()
    demo_steps = result.demo_transitions
    assert demo_steps > 0 and trainer.demo.data["intervention"][:demo_steps].sum() == 0
    train = [r for r in records if r.kind == "train"]
    human = [r for r in train if r.intervention]
    assert 0 < len(human) < len(train)
    space = trainer.space
    for r in human:  # the teleop command, stored as the normalised action that executes it
        np.testing.assert_allclose(r.action, space.from_target(r.teleop_target, r.obs["joint_pos"], r.previous_target))
        np.testing.assert_allclose(r.target, space.to_target(r.action, r.obs["joint_pos"], r.previous_target))
        inside = np.all(np.abs(r.teleop_target - r.obs["joint_pos"])[: space.n_arm] <= space.max_step)
        if inside:
            np.testing.assert_allclose(r.target, np.clip(r.teleop_target, space.lower, space.upper), atol=1e-5)
    assert all(r.teleop_target is None for r in train if not r.intervention)
    online = trainer.online.ordered()
    assert online["intervention"].sum() == len(human) == trainer.online.intervention_count
    np.testing.assert_array_equal(online["intervention"], [r.intervention for r in train])
    np.testing.assert_allclose(online["action"][online["intervention"]], np.stack([r.action for r in human]))
    demo = trainer.demo.ordered()
    np.testing.assert_array_equal(demo["action"][demo_steps:], online["action"][online["intervention"]])
    np.testing.assert_array_equal(demo["obs"][demo_steps:], online["obs"][online["intervention"]])
    assert demo["intervention"][demo_steps:].all()
    assert sum(e.intervention_steps for e in result.train_episodes()) == len(human)


def test_wide_pick_cube_variant():
    """pick_cube_wide: a wider start distribution (cube area, every yaw, joint noise at reset) that the scripted
    expert still solves through the RL action space (benchmarks/hil_pick_cube.py --task pick_cube_wide)."""
    from robot_stack.sim.tasks import load_task_config

    base, wide = load_task_config("pick_cube").randomization, load_task_config("pick_cube_wide").randomization
    width = lambda r: np.ptp(r.object_x) * np.ptp(r.object_y)  # noqa: E731
    assert width(wide) >= 2 * width(base) and np.ptp(wide.object_yaw) >= np.pi / 2 - 0.01 > np.ptp(base.object_yaw)
    assert wide.joint_noise > 0 == base.joint_noise
    trainer = Trainer(load_hil_config(robot="panda", task="pick_cube_wide", demos=3, seed=7), progress=False)
    assert trainer.collect_demos() == 1.0 and len(trainer.demo) > 0
    homes = []
    for _ in range(3):
        obs, _ = trainer._reset()
        homes.append(obs["joint_pos"][: trainer.space.n_arm])
    assert np.ptp(np.stack(homes), axis=0).max() > 0.05  # the arm starts somewhere else every episode
    trainer.env.close()


# -- buffer persistence --------------------------------------------------------------------------------
def numbered(buf: ReplayBuffer, start: int, n: int) -> None:
    for i in range(start, start + n):
        buf.add(np.full(buf.obs_dim, i), np.full(buf.act_dim, i % 7 / 7), float(i % 2), np.full(buf.obs_dim, i + 1),
                i % 5 == 0, i % 3 == 0, -0.01 * (i % 4))


def test_buffer_save_load_round_trip(tmp_path):
    buf = ReplayBuffer(50, 4, 3)
    numbered(buf, 0, 30)
    assert buf.save(tmp_path / "b", fsync=False) == 30
    loaded = ReplayBuffer.load(tmp_path / "b")
    for k, v in buf.ordered().items():
        np.testing.assert_array_equal(loaded.ordered()[k], v)
    numbered(buf, 30, 90)  # wraps the ring; the next save appends only the new steps
    assert buf.save(tmp_path / "b", fsync=False) == 50
    loaded = ReplayBuffer.load(tmp_path / "b")
    assert len(loaded) == 50 and loaded.capacity == 50
    for k, v in buf.ordered().items():
        np.testing.assert_array_equal(loaded.ordered()[k], v)
    np.testing.assert_array_equal(loaded.ordered()["obs"][:, 0], np.arange(70, 120))
    # resume: the loaded buffer keeps appending to the same store
    numbered(loaded, 120, 5)
    assert loaded.save(tmp_path / "b", fsync=False) == 5
    np.testing.assert_array_equal(ReplayBuffer.load(tmp_path / "b").ordered()["obs"][:, 0], np.arange(75, 125))
    with pytest.raises(UserError, match="another buffer"):
        ReplayBuffer(10, 4, 3).save(tmp_path / "b")
    with pytest.raises(UserError):
        ReplayBuffer.load(tmp_path / "nothing")


def test_buffer_save_is_crash_safe(tmp_path):
    """kill -9 a process while it saves: the store keeps the previous save, readable and complete."""
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_hil_core import numbered
        from robot_stack.policies.hil.buffer import ReplayBuffer
        buf = ReplayBuffer(200000, 256, 8)
        for k in range(100):
            numbered(buf, k * 4000, 4000)
            print("saving", k, flush=True)
            buf.save({str(tmp_path / 'b')!r}, fsync=False)
            print("saved", k, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    saved = -1
    try:
        for line in proc.stdout:
            word, k = line.split()
            if word == "saved":
                saved = int(k)
            elif int(k) == 3:  # killed somewhere inside the fourth save
                time.sleep(0.05 + 0.1 * np.random.default_rng().random())
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert saved >= 2
    loaded = ReplayBuffer.load(tmp_path / "b")
    n = len(loaded)
    assert n % 4000 == 0 and n // 4000 - 1 >= saved
    expected = ReplayBuffer(200000, 256, 8)
    numbered(expected, 0, n)
    for k, v in expected.ordered().items():
        np.testing.assert_array_equal(loaded.ordered()[k], v)


# -- agent ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gripper_critic", [False, True])
def test_agent_save_load_identical_actions(tmp_path, gripper_critic):
    cfg = AgentConfig(hidden_dims=(32, 32), batch_size=16, gripper_critic=gripper_critic)
    agent = SACAgent(cfg, 6, 3, seed=0)
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(100, 6, 3)
    for _ in range(100):
        a = rng.uniform(-1, 1, 3)
        a[-1] = rng.integers(-1, 2)
        buf.add(rng.normal(size=6), a, rng.random(), rng.normal(size=6), False, False, -0.01)
    for _ in range(5):
        agent.update(buf.sample(16, rng))
    agent.save(tmp_path / "ckpt")
    obs = rng.normal(size=(10, 6)).astype(np.float32)
    twin = SACAgent.from_checkpoint(tmp_path / "ckpt")
    np.testing.assert_array_equal(twin.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    assert twin.steps == agent.steps == 5 and twin.temperature == agent.temperature
    # the optimiser moments came back too: one more identical update gives identical weights
    batch = buf.sample(16, rng)
    torch.manual_seed(1)
    twin.rng = np.random.default_rng(2)
    twin.update(batch)
    torch.manual_seed(1)
    agent.rng = np.random.default_rng(2)
    agent.update(batch)
    np.testing.assert_allclose(twin.act(obs, deterministic=True), agent.act(obs, deterministic=True), atol=1e-6)
    # what the learner ships to the actor
    actor = SACAgent(cfg, 6, 3, seed=5)
    actor.load_actor_state(agent.actor_state())
    np.testing.assert_array_equal(actor.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    with pytest.raises(UserError, match="do not fit"):
        SACAgent(cfg, 7, 3).load_actor_state(agent.actor_state())
    weights = tmp_path / "ckpt" / "agent.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    with pytest.raises(UserError, match="corrupt or modified"):
        SACAgent.from_checkpoint(tmp_path / "ckpt")


# -- learner device ----------------------------------------------------------------------------------
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch")


def test_device_resolution_and_errors(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert load_hil_config().device == "auto"
    with pytest.raises(UserError, match=r"device 'gpu': use auto, cpu, cuda or cuda:<n>"):
        load_hil_config(device="gpu")
    with pytest.raises(UserError, match=r"^hil device 'cuda0': use auto"):
        resolve_device("cuda0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(UserError) as err:
            resolve_device(name)
        assert str(err.value) == f"hil device {name}: no CUDA GPU visible to torch (use device: cpu)"
    with pytest.raises(UserError, match="^hil device cuda: no CUDA GPU visible to torch"):
        SACAgent(AgentConfig(hidden_dims=(8,)), 4, 2, device="cuda")
    with pytest.raises(UserError, match="^hil device cuda: no CUDA GPU visible to torch"):  # before the twin starts
        Trainer(load_hil_config(device="cuda"), progress=False)


def test_cli_train_without_a_gpu_is_one_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "robot_stack.cli", "hil", "train", "--out", str(tmp_path / "run"), "--device", "cuda"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["robot-stack: error: hil device cuda: no CUDA GPU visible to torch "
                                                "(use device: cpu)"], proc.stderr


@pytest.mark.parametrize("kw", [{}, {"gripper_critic": True}, {"n_critics": 4, "critic_subsample": 2},
                                {"encoder": "conv", "image_shape": (8, 8, 3), "conv_channels": (4, 4)}])
def test_agent_update_keeps_every_tensor_on_the_agent_device(monkeypatch, kw):
    """On the meta device any tensor made on the CPU inside an update (indices, zeros, a batch) and mixed with
    the networks' raises; the one host sync at the end (the losses) is stubbed."""
    cfg = AgentConfig(hidden_dims=(16, 16), batch_size=8, **kw)
    obs_dim = 5 + (8 * 8 * 3 if kw.get("encoder") else 0)
    agent = SACAgent(cfg, obs_dim, 3, 5, seed=0, device=torch.device("meta"))
    assert {p.device.type for m in agent._modules().values() for p in m.parameters()} == {"meta"}
    assert agent.log_alpha.device.type == "meta"
    buf = filled(20, 0.5, obs_dim, 3)
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: [0.0] * self.numel())
    for actor in (False, True):
        info = agent.update(mixed_batch(buf, buf, 8, 0.5, np.random.default_rng(0)), update_actor=actor)
        assert "critic_loss" in info and ("actor_loss" in info) == actor


@CUDA
def test_gpu_learner_ships_cpu_weights_and_cpu_checkpoints(tmp_path):
    cfg = AgentConfig(hidden_dims=(32, 32), batch_size=16, gripper_critic=True)
    agent = SACAgent(cfg, 6, 3, seed=0, device="cuda")
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(100, 6, 3)
    for _ in range(100):
        buf.add(rng.normal(size=6), rng.uniform(-1, 1, 3).round(), rng.random(), rng.normal(size=6), False)
    for i in range(4):
        agent.update(buf.sample(16, rng), update_actor=i % 2 == 1)
    state = agent.actor_state()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in state.values())
    obs = rng.normal(size=(10, 6)).astype(np.float32)
    actor = SACAgent(cfg, 6, 3, seed=5)  # the actor: CPU
    actor.load_actor_state(state)
    np.testing.assert_allclose(actor.act(obs, deterministic=True), agent.act(obs, deterministic=True), atol=1e-5)
    agent.save(tmp_path / "ckpt")
    on_cpu = SACAgent.from_checkpoint(tmp_path / "ckpt")  # the default: a CPU agent, as a CPU-only machine makes
    assert on_cpu.device == torch.device("cpu") and on_cpu.steps == 4
    np.testing.assert_allclose(on_cpu.act(obs, deterministic=True), agent.act(obs, deterministic=True), atol=1e-5)
    back = SACAgent.from_checkpoint(tmp_path / "ckpt", device="cuda")  # resumes on the GPU, optimiser state included
    back.update(buf.sample(16, rng))


@CUDA
def test_in_process_loop_on_the_gpu(tmp_path):
    cfg = load_hil_config(robot="panda", device="cuda", env_steps=40, warmup_steps=10, demos=1, eval_episodes=1,
                          agent={"batch_size": 32}, intervener={"probability": 0.5, "steps": 5, "patience": 0})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    result = trainer.run()
    assert trainer.agent.device.type == "cuda" and trainer.updates > 0 and result.eval_success is not None
    assert SACAgent.from_checkpoint(tmp_path / "run" / "agent").steps == trainer.updates


def test_sac_learns_a_sparse_reward_chain():
    """1-D point, start at 0, sparse reward 1 (terminal) at x >= 0.6, 15-step episodes: go right."""
    cfg = AgentConfig(hidden_dims=(64, 64), batch_size=64, utd_ratio=1, gamma=0.9, actor_lr=1e-3, critic_lr=1e-3,
                      temperature_lr=1e-3)
    agent = SACAgent(cfg, 1, 1, seed=0)
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(10000, 1, 1)

    def rollout(deterministic: bool, learn: bool) -> int:
        x = 0.0
        for t in range(15):
            a = agent.act(np.array([x], np.float32), deterministic) if learn or deterministic else rng.uniform(-1, 1, 1)
            nx = float(np.clip(x + 0.2 * a[0], -1, 1))
            done = nx >= 0.6
            if learn:
                buf.add(np.array([x]), a, float(done), np.array([nx]), done)
                if len(buf) >= 64:
                    agent.update(buf.sample(64, rng))
            x = nx
            if done:
                return t + 1
        return 99

    before = rollout(True, False)
    for _ in range(100):
        rollout(False, True)
    assert before == 99  # the untrained policy does not solve it
    assert rollout(True, False) <= 4  # 3 steps of +0.2 is optimal


def test_agent_fits_demo_actions_from_sparse_reward_alone():
    """RLPD with demos only (no online data): the policy reproduces the demonstrated successful action."""
    cfg = AgentConfig(hidden_dims=(64, 64), batch_size=64, gamma=0.9, actor_lr=1e-3, critic_lr=1e-3)
    agent = SACAgent(cfg, 2, 2, seed=0)
    rng = np.random.default_rng(0)
    demo, online = ReplayBuffer(1000, 2, 2), ReplayBuffer(1000, 2, 2)
    good = np.array([0.7, -0.4], np.float32)
    for _ in range(300):  # contextual bandit: the demo action succeeds, random actions fail
        obs = rng.normal(size=2)
        demo.add(obs, good, 1.0, obs, True)
        online.add(obs, rng.uniform(-1, 1, 2), 0.0, obs, True)
    for _ in range(600):
        agent.update(mixed_batch(demo, online, 64, 0.5, rng))
    acts = agent.act(rng.normal(size=(20, 2)).astype(np.float32), deterministic=True)
    assert np.abs(acts - good).max() < 0.15


# -- reward classifier ---------------------------------------------------------------------------------
def test_classifier_on_a_synthetic_separable_set(tmp_path):
    from robot_stack.data import EpisodeStore
    from robot_stack.policies.hil.classifier import ClassifierConfig, RewardClassifier, train_classifier

    rng = np.random.default_rng(0)
    store = EpisodeStore(tmp_path / "s", "a", fsync=False)
    for _ in range(10):
        state = rng.normal(size=(60, 7)).astype(np.float32)
        label = (state[:, 2] + 0.5 * state[:, 0] > 0.3).astype(np.float32)
        store.append_episode({"object_state": state, "success_label": label})
    cfg = ClassifierConfig(keys=("object_state",), epochs=40, batch_size=256)
    report = train_classifier(tmp_path / "s", tmp_path / "clf", cfg, progress=False)
    assert report.label_source == "data/success_label" and report.heldout_frames == 120
    assert report.heldout_accuracy >= 0.95
    clf = RewardClassifier.load(tmp_path / "clf")
    assert clf.predict({"object_state": np.array([1, 0, 2, 0, 0, 0, 1.0])}) > 0.9
    assert clf.predict({"object_state": np.array([-1, 0, -2, 0, 0, 0, 1.0])}) < 0.1


def test_classifier_on_images(tmp_path):
    """Image-only classifier: a red square somewhere in the frame is a success."""
    from robot_stack.data import EpisodeStore
    from robot_stack.policies.hil.classifier import ClassifierConfig, train_classifier

    rng = np.random.default_rng(0)
    store = EpisodeStore(tmp_path / "s", "a", fsync=False)
    for _ in range(8):
        images = rng.integers(0, 60, (20, 40, 40, 3), dtype=np.uint8)
        label = rng.random(20) < 0.4
        for img, positive in zip(images, label):
            if positive:
                r, c = rng.integers(0, 30, 2)
                img[r:r + 10, c:c + 10] = (220, 30, 30)
        store.append_episode({"front_image": images, "success_label": label.astype(np.float32)})
    cfg = ClassifierConfig(keys=(), image_key="front_image", image_size=(32, 32), epochs=12, batch_size=16,
                           val_ratio=0.25)
    report = train_classifier(tmp_path / "s", None, cfg, progress=False)
    assert report.heldout_frames == 40 and report.heldout_accuracy >= 0.9, report.lines()


def test_classifier_on_held_out_twin_frames(tmp_path):
    """Frames of the twin's pick_cube: expert episodes (labels from their success flags) vs. random ones."""
    from robot_stack.data import EpisodeStore
    from robot_stack.policies.hil.classifier import ClassifierConfig, RewardClassifier, train_classifier
    from robot_stack.sim.experts import make_expert
    from robot_stack.sim.gym_env import TwinEnv

    env = TwinEnv("panda", "pick_cube")
    expert = make_expert(env.profile, env.task_config)
    store = EpisodeStore(tmp_path / "s", "a", fsync=False)
    rng = np.random.default_rng(0)
    truth = []
    for ep in range(12):
        obs, info = env.reset(seed=ep)
        expert.reset()
        frames, success, after = [], False, 0
        scripted = ep % 3 != 2
        for _ in range(60):
            target = expert.act({k: v.astype(float) for k, v in obs.items()}) if scripted else \
                np.clip(obs["joint_pos"] + rng.normal(0, 0.05, obs["joint_pos"].shape), env.action_space.low, env.action_space.high)
            obs, _, _, _, info = env.step(target)
            frames.append({k: obs[k] for k in ("ee_pose", "object_state", "joint_pos")})
            truth.append(info["success"])
            success = success or info["success"]
            after += int(success)
            if after >= 3:  # stop once the final 3 frames are lifted ones, as a recorder saving on success
                break
        store.append_episode({k: np.stack([f[k] for f in frames]) for k in frames[0]}, success=bool(success))
    env.close()
    cfg = ClassifierConfig(keys=("ee_pose", "object_state"), final_k=3, margin=2, epochs=60, batch_size=256,
                           val_ratio=0.34)
    report = train_classifier(tmp_path / "s", tmp_path / "clf", cfg, progress=False)
    assert report.label_source == "episode success flags" and report.positives == 3 * 8
    assert report.heldout_frames > 30 and report.heldout_accuracy >= 0.9, report.lines()
    clf = RewardClassifier.load(tmp_path / "clf")
    data = {k: store.array(k)[:] for k in ("ee_pose", "object_state")}
    agree = np.mean((clf.predict_batch(data) > 0.5) == np.array(truth))
    assert agree >= 0.9


def test_conv_encoder_on_camera_observations(tmp_path):
    from robot_stack.sim.gym_env import TwinEnv

    cfg = load_hil_config(robot="panda", agent={"encoder": "conv", "image_shape": [32, 32, 3], "hidden_dims": [32, 32],
                                                "conv_channels": [8, 8], "batch_size": 4},
                          observation={"cameras": ["front"]})
    env = TwinEnv("panda", "pick_cube", cameras=["front"])
    space = RLSpace(env.profile, "pick_cube", cfg)
    assert space.obs_dim == space.state_dim + 32 * 32 * 3
    agent = SACAgent(cfg.agent, space.obs_dim, space.act_dim, space.state_dim, seed=0)
    buf = ReplayBuffer(8, space.obs_dim, space.act_dim)
    obs, _ = env.reset(seed=0)
    vec = space.observation(obs)
    assert vec[space.state_dim:].max() > 0  # the image is there
    for _ in range(4):
        action = agent.act(vec)
        obs, reward, terminated, _, _ = env.step(space.to_target(action, obs["joint_pos"]))
        nxt = space.observation(obs)
        buf.add(vec, action, reward, nxt, terminated)
        vec = nxt
    env.close()
    before = agent.act(vec, deterministic=True)
    info = agent.update(buf.sample(4, np.random.default_rng(0)))
    assert np.isfinite(info["critic_loss"]) and not np.array_equal(before, agent.act(vec, deterministic=True))
    agent.save(tmp_path / "a")
    np.testing.assert_array_equal(SACAgent.from_checkpoint(tmp_path / "a").act(vec, deterministic=True),
                                  agent.act(vec, deterministic=True))
