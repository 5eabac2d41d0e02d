"""Arm joint calibration against the servo-bus emulator (its own process, on a pty) with known offsets.

The emulator maps joint angles to ticks through a secret "true" calibration; a test "hand" puts the
arm in a pose by closing the loop on that true calibration (as a jig would), and the calibrator,
which only reads raw ticks, must recover the true file exactly.
"""

import time

import numpy as np
import pytest
import yaml

from robot_stack.calibration.arm import ArmCalibrator, RawBus
from robot_stack.drivers.servo.backend import ServoBusBackend
from robot_stack.drivers.servo.calibration import load_calibration, make_calibration, save_calibration
from robot_stack.drivers.servo.testing import read_status, start_emulator
from robot_stack.errors import UserError
from robot_stack.profile import load_profile
from robot_stack.resources import find_config

ZEROS = [1811, 2302, 1950, 2233, 1702, 2150]
DIRECTIONS = [-1, 1, 1, -1, 1, -1]
REFERENCE = [0.4, -0.6, 0.7, 0.5, -0.8, 0.3]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """(profile, true calibration, emulator port): the SO-101 with unknown (to the calibrator) offsets."""
    folder = tmp_path_factory.mktemp("arm")
    data = yaml.safe_load(find_config("robots", "so101").read_text())
    data["hardware"]["calibration"] = str(folder / "so101_follower.yaml")  # what the calibrator writes
    path = folder / "so101.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    profile = load_profile(path)
    truth = make_calibration(profile, ZEROS, DIRECTIONS)
    save_calibration(truth, folder / "truth.yaml")
    status = folder / "status.json"
    proc, port = start_emulator(str(path), "--calibration", str(folder / "truth.yaml"), status_file=status)
    yield profile, truth, port, folder, status
    proc.terminate()
    proc.wait(timeout=10)


def place(profile, truth, port, status_file, angles, timeout=120.0, tolerance=0.45):
    """Put the arm at ``angles`` (to the nearest tick) and wait until it is at rest there.

    Integral action on the emulator's true joint positions (``status_file``) against gravity sag, like
    a jig; done when every joint is within half a tick of the target and has stopped creeping."""
    backend = ServoBusBackend(profile, port=port, calibration=truth)
    try:
        rad_per_tick = backend.ticks.rad_per_tick
        target = np.round(np.asarray(angles, dtype=float) / rad_per_tick) * rad_per_tick  # a whole tick
        goal, previous = target.copy(), None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            backend.write(goal)
            time.sleep(0.8)
            error = (target - np.array(read_status(status_file)["joint_positions"])) / rad_per_tick  # ticks
            at_rest = previous is not None and np.all(np.abs(error - previous) < 0.01)
            if np.all(np.abs(error) < tolerance) and (at_rest or tolerance > 1):
                return
            if np.any(np.abs(error) >= 0.5) and (previous is None or at_rest or np.any(np.abs(error) > 3)):
                goal = goal + np.round(error) * rad_per_tick
            previous = error
        raise AssertionError(f"arm did not come to rest at {angles}: error {error} ticks")
    finally:
        backend.close()


def test_recovers_known_offsets_and_directions_exactly(rig):
    profile, truth, port, folder, status = rig
    place(profile, truth, port, status, np.zeros(6))
    bus = RawBus(profile, port)
    cal = ArmCalibrator(profile, bus.resolutions)
    try:
        cal.record_zero(bus.sample())
        bus.close()
        place(profile, truth, port, status, REFERENCE)
        bus = RawBus(profile, port)
        cal.record_reference(bus.sample(), np.array(REFERENCE))
    finally:
        bus.close()
    result = cal.build(cal.directions("reference"), ranges="profile")
    assert {n: j.zero for n, j in result.joints.items()} == dict(zip(profile.all_joint_names, ZEROS))
    assert [j.direction for j in result.joints.values()] == DIRECTIONS
    assert result == truth  # ranges from the profile limits match too
    save_calibration(result, folder / "out.yaml")
    assert load_calibration(folder / "out.yaml", profile) == truth


def test_ranges_from_moved_extremes_and_bad_reference(rig):
    profile, truth, port, *_ = rig
    cal = ArmCalibrator(profile, [4096] * 6)
    cal.record_zero(np.array(ZEROS))
    for ticks in ([z - 300 for z in ZEROS], [z + 500 for z in ZEROS], ZEROS):
        cal.observe(np.array(ticks))
    built = cal.build(DIRECTIONS, ranges="moved")
    assert [(j.min, j.max) for j in built.joints.values()] == [(z - 300, z + 500) for z in ZEROS]
    # the arm was not moved to the reference pose: a clear one-line error
    cal.record_reference(np.array(ZEROS), np.array(REFERENCE))
    with pytest.raises(UserError, match="moved 0 deg between the zero and reference poses"):
        cal.directions("reference")
    # a joint left at 0 in the reference pose: its direction comes from the fallback calibration, or fails
    reference = np.array([0.0, *REFERENCE[1:]])
    ticks = np.array(ZEROS) + np.rint(np.array(DIRECTIONS) * reference * 4096 / (2 * np.pi)).astype(int)
    cal.record_reference(ticks, reference)
    assert cal.directions("reference", fallback=truth) == DIRECTIONS
    with pytest.raises(UserError, match="direction of joint 'shoulder_pan' is unknown"):
        cal.directions("reference")
    # directions from the user moving each joint in its positive direction
    cal.record_moved(np.array(ZEROS), np.array(ZEROS) + 60 * np.array(DIRECTIONS))
    assert cal.directions("moved") == DIRECTIONS
    with pytest.raises(UserError, match="sweep"):
        ArmCalibrator(profile, [4096] * 6, zero=np.array(ZEROS), seen_min=np.array(ZEROS), seen_max=np.array(ZEROS) + 5
                      ).build(DIRECTIONS, ranges="moved")


def test_raw_bus_errors(rig, tmp_path):
    profile, *_ = rig
    with pytest.raises(UserError, match="does not exist"):
        RawBus(profile, str(tmp_path / "ttyNONE"))
    panda = load_profile("panda")
    with pytest.raises(UserError, match="not a servo bus"):
        RawBus(panda)
