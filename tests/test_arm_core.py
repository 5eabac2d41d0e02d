"""Arm core: safety limits, e-stop/watchdog rules and trajectory interpolation (pure, no ROS graph)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_stack.arm.commands import TrajectorySource, _rotate_xyzw
from robot_stack.arm.kinematics import Kinematics
from robot_stack.arm.safety import ArmSafety
from robot_stack.profile import load_profile


@pytest.fixture(scope="module")
def so101():
    return load_profile("so101")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=6, max_size=6))
def test_limit_never_exceeds_limits_or_step(values):
    profile = load_profile("so101")
    safety = ArmSafety(profile)
    previous = np.array(profile.sim.home)
    target = np.array(values)
    if not np.all(np.isfinite(target)):
        with pytest.raises(ValueError):
            safety.limit(target, previous)
        return
    out = safety.limit(target, previous)
    assert np.all(out >= safety.lower) and np.all(out <= safety.upper)
    assert np.all(np.abs(out - previous) <= safety.max_step + 1e-12)


def test_far_target_is_approached_at_the_velocity_limit(so101):
    safety = ArmSafety(so101)
    q = np.array(so101.sim.home)
    goal = q.copy()
    goal[0] = 1.5
    steps = 0
    while abs(q[0] - 1.5) > 1e-9:
        q = safety.limit(goal, q)
        steps += 1
    expected = int(np.ceil(1.5 / (so101.joints[0].velocity * so101.control_period)))
    assert steps == expected


def test_workspace_clamp_and_watchdog(so101):
    safety = ArmSafety(so101)
    assert np.allclose(safety.clamp_workspace(np.array([1.0, 0.0, -1.0])), [0.45, 0.0, 0.0])
    period = so101.control_period
    n = so101.control.watchdog_periods
    assert not safety.is_stale(None, 100.0)
    assert not safety.is_stale(10.0, 10.0 + (n - 0.5) * period)
    assert safety.is_stale(10.0, 10.0 + (n + 0.5) * period)


def test_trajectory_interpolates_from_current_command_and_holds_omitted_joints():
    q_now = np.array([0.0, 1.0, 2.0])
    positions = np.array([[1.0, np.nan, np.nan], [2.0, np.nan, np.nan]])
    src = TrajectorySource.start(10.0, np.array([1.0, 2.0]), positions, q_now)
    assert np.allclose(src.target(10.5, q_now)[0], 0.5)
    assert np.isnan(src.target(10.5, q_now)[1])  # omitted joints keep their command
    assert np.allclose(src.target(11.5, q_now)[0], 1.5)
    assert np.allclose(src.target(99.0, q_now)[0], 2.0)  # hold the last point
    assert src.end_time == 12.0


def test_small_rotation_composes():
    q = np.array([0.0, 0.0, 0.0, 1.0])
    for _ in range(100):
        q = _rotate_xyzw(q, np.array([0.0, 0.0, np.pi / 200]))
    assert np.allclose(q, [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)], atol=1e-9)


@pytest.mark.parametrize("robot", ["so101", "panda"])
def test_ik_reaches_reachable_points(robot):
    profile = load_profile(robot)
    kin = Kinematics(profile)
    q0 = np.array(profile.sim.home[: len(profile.joints)])
    pos, _ = kin.fk(q0)
    for offset in ([0.03, 0.0, 0.0], [0.0, 0.03, -0.02], [-0.02, -0.02, 0.03]):
        target = pos + np.array(offset)
        q = kin.ik(target, None, q0)
        assert np.linalg.norm(kin.fk(q)[0] - target) < 1e-3
        assert np.all(q >= profile.lower - 1e-6) and np.all(q <= profile.upper + 1e-6)
