"""Robot profiles: shipped ones load; bad ones give one-line errors naming the field."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from robot_stack.errors import UserError
from robot_stack.profile import load_profile

SO101 = Path(__file__).resolve().parent.parent / "config" / "robots" / "so101.yaml"


@pytest.mark.parametrize("name", ["so101", "panda"])
def test_shipped_profiles_load(name):
    profile = load_profile(name)
    assert profile.name == name
    assert len(profile.all_joint_names) == len(profile.joints) + 1
    assert all(j.lower < j.upper for j in profile.joints)


def _write(tmp_path, data):
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _broken(tmp_path, edit):
    data = yaml.safe_load(SO101.read_text())
    edit(data)
    return _write(tmp_path, data)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d["joints"][2].pop("velocity"), "joints[2].velocity: missing (velocity limit, rad/s)"),
        (lambda d: d["cameras"][0].update(encoding="yuv422"), "unknown encoding 'yuv422'"),
        (lambda d: d["joints"][0].update(lower=2.0), "lower (2.0) must be below upper"),
        (lambda d: d.update(colour="red"), "colour: unknown key"),
        (lambda d: d["control"].update(rate_hz="fast"), "control.rate_hz: expected a number, got 'fast'"),
        (lambda d: d["control"].update(on_stale="explode"), "control.on_stale: 'explode' is not one of"),
        (lambda d: d["sim"].update(home=[0.0]), "sim.home: expected 6 values"),
    ],
)
def test_bad_profile_one_line_error(tmp_path, edit, expected):
    path = _broken(tmp_path, edit)
    with pytest.raises(UserError) as err:
        load_profile(str(path))
    message = str(err.value)
    assert expected in message and "\n" not in message
    assert str(path) in message


def test_unknown_profile_lists_known():
    with pytest.raises(UserError, match="known: panda, so101"):
        load_profile("ur5")


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\njoints: [\n")
    with pytest.raises(UserError, match=r"bad.yaml:\d+: invalid YAML"):
        load_profile(str(path))


def test_cli_bad_profile_is_one_line_without_traceback(tmp_path):
    path = _broken(tmp_path, lambda d: d["joints"][0].pop("effort"))
    out = subprocess.run([sys.executable, "-m", "robot_stack.cli", "profile", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "joints[0].effort: missing" in out.stderr


def test_cli_help_for_every_subcommand():
    from robot_stack.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert "profile" in commands
    for name in commands:
        out = subprocess.run([sys.executable, "-m", "robot_stack.cli", name, "--help"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "usage: robot-stack" in out.stdout


def test_process_environment_defaults_and_user_values() -> None:
    from robot_stack.resources import ros_environment

    env = ros_environment({"PATH": "/usr/bin"})
    assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"  # sleeping OpenMP workers on shared cores
    mine = ros_environment({"PATH": "/usr/bin", "OMP_WAIT_POLICY": "ACTIVE", "RMW_IMPLEMENTATION": "rmw_zenoh_cpp"})
    assert mine["OMP_WAIT_POLICY"] == "ACTIVE" and mine["RMW_IMPLEMENTATION"] == "rmw_zenoh_cpp"


def test_a_camera_at_another_resolution_scales_its_region_of_interest():
    front = load_profile("so101").camera("front")
    assert front.roi == (160, 80, 320, 240)
    small = front.at_resolution(320, 240)  # e.g. a camera node's width/height parameters
    assert (small.width, small.height, small.roi) == (320, 240, (80, 40, 160, 120))
    odd = front.at_resolution(33, 25)  # rounding never leaves the image
    x, y, w, h = odd.roi
    assert x + w <= 33 and y + h <= 25 and w > 0 and h > 0
