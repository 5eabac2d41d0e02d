"""Latency calibration on MuJoCo renders of the SO-101 with injected camera and actuation delays."""

import numpy as np
import pytest

from robot_stack.calibration.board import Board
from robot_stack.calibration.latency import (
    Recording, analyse, downsample, estimate_lag, load_latency, save_latency, step_profile,
)
from robot_stack.calibration.synthetic import RobotBoardScene, look_at
from robot_stack.errors import UserError
from robot_stack.profile import load_profile

CAMERA_DELAY = 0.100
ACTUATION_DELAY = 0.040


def record(camera_delay=CAMERA_DELAY, actuation_delay=ACTUATION_DELAY, fps=20.0, seed=0):
    """Command a step motion of shoulder_pan; the arm follows after ``actuation_delay``; a fixed camera
    renders it at ``fps`` (with jitter) and stamps each frame ``camera_delay`` late."""
    profile = load_profile("so101")
    scene = RobotBoardScene(profile, "eye_to_hand", np.eye(4), Board(), width=160, height=120)
    rng = np.random.default_rng(seed)
    try:
        scene.set_mocap(look_at(np.array([0.55, 0.35, 0.45]), np.array([0.15, 0.0, 0.1])))
        home = np.array(profile.sim.home[:5])
        t_cmd, offset = step_profile(2.8, 0.3)
        t_cmd = t_cmd + 10.0  # arbitrary clock origin

        def joint_at(t):
            return home[0] + np.interp(t - actuation_delay, t_cmd, offset, left=0.0)

        t_joint = np.arange(t_cmd[0], t_cmd[-1], 0.01)
        t_true = np.arange(t_cmd[0], t_cmd[-1], 1 / fps)
        t_true = t_true + rng.uniform(0, 0.004, len(t_true))  # capture jitter
        frames = []
        for t in t_true:
            q = home.copy()
            q[0] = joint_at(t)
            scene.set_joints(q)
            frames.append(downsample(scene.render(show_robot=True), 80))
    finally:
        scene.close()
    return profile, Recording(0, t_cmd, home[0] + offset, t_joint, joint_at(t_joint),
                              {"front": (t_true + camera_delay, np.array(frames))})


@pytest.fixture(scope="module")
def recording():
    return record()


def test_recovers_injected_camera_and_actuation_delay(recording, tmp_path):
    profile, rec = recording
    rec.save(tmp_path / "latency.npz")
    cal = analyse(Recording.load(tmp_path / "latency.npz"), profile.name)
    assert abs(cal.camera_latency["front"] - CAMERA_DELAY) < 0.010, cal
    assert abs(cal.actuation_latency - ACTUATION_DELAY) < 0.005, cal
    params = save_latency(cal, tmp_path / "so101_latency.yaml")
    assert load_latency(tmp_path / "so101_latency.yaml") == cal
    import yaml

    assert yaml.safe_load(params.read_text()) == {"policy_server": {"ros__parameters": {"execution_latency": cal.actuation_latency}}}


def test_lag_estimator_subsample_accuracy():
    t = np.arange(0, 4, 0.01)
    x = np.sin(2.1 * t) + 0.5 * np.sin(5.3 * t)
    ts = np.arange(0.3, 3.5, 1 / 30)
    for lag in (-0.0337, 0.0, 0.0712, 0.25):
        y = np.tanh(np.interp(ts - lag, t, x))  # nonlinear but smooth mapping
        assert abs(estimate_lag(t, x, ts, y).lag - lag) < 0.002


def test_bad_recordings(recording, tmp_path):
    profile, rec = recording
    still = Recording(0, rec.t_cmd, np.zeros_like(rec.q_cmd), rec.t_joint, np.zeros_like(rec.q_joint))
    with pytest.raises(UserError, match="no motion recorded"):
        analyse(still, profile.name)
    frozen = Recording(rec.joint, rec.t_cmd, rec.q_cmd, rec.t_joint, rec.q_joint,
                       {"front": (rec.cameras["front"][0], np.repeat(rec.cameras["front"][1][:1], len(rec.cameras["front"][0]), 0))})
    with pytest.raises(UserError, match="do not change"):
        analyse(frozen, profile.name)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a latency recording"):
        Recording.load(tmp_path / "junk.npz")
