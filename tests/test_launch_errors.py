"""Malformed launch files fail before anything starts, with one line: <file>:<line>: <element>: <problem>."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robot_stack.errors import UserError
from robot_stack.launcher import LaunchRunner

FILES = Path(__file__).resolve().parent / "launch_files"
ROBOT_STACK = str(Path(sys.prefix) / "bin" / "robot-stack")


def line_of(path: Path, marker: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line)


@pytest.mark.parametrize(
    ("name", "marker", "element", "problem"),
    [
        ("bad_attribute", "nmae=", "node", "unknown attribute 'nmae' (allowed: "),
        ("bad_missing_arg", 'name="port"', "arg", "missing required argument 'port' (serial port of the arm); pass port:=<value>"),
        ("bad_substitution", "$(vr", "executable", "cmd: bad substitution in 'echo $(vr robot)': unknown substitution $(vr)"),
        ("bad_element", "<nodes", "nodes", "unknown element (supported: <arg>, <let>"),
        ("bad_eval", "__import__", "let", "function call is not allowed"),
    ],
)
def test_error_names_file_line_and_element(name: str, marker: str, element: str, problem: str) -> None:
    path = FILES / f"{name}.launch.xml"
    runner = LaunchRunner(path)
    with pytest.raises(UserError) as info:
        runner.start()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line_of(path, marker)}: <{element}>: ")
    assert problem in message
    assert runner.supervisor is None  # nothing was started


def test_error_in_included_file_points_into_that_file() -> None:
    runner = LaunchRunner(FILES / "bad_include.launch.xml")
    with pytest.raises(UserError, match=rf"^{FILES / 'bad_attribute.launch.xml'}:4: <node>: unknown attribute 'nmae'"):
        runner.start()
    assert runner.supervisor is None  # the valid <executable> before the include did not start


def test_missing_arg_given_on_the_command_line_is_fine() -> None:
    specs = LaunchRunner(FILES / "bad_missing_arg.launch.xml", {"port": "/dev/ttyACM0"}).plan()
    assert specs[0].argv == ["echo", "/dev/ttyACM0"]


def test_invalid_xml_and_wrong_root(tmp_path: Path) -> None:
    broken = tmp_path / "broken.launch.xml"
    broken.write_text("<launch>\n  <arg name='a' default='1'>\n</launch>\n")
    with pytest.raises(UserError, match=rf"^{broken}:3: invalid XML \(mismatched tag\)$"):
        LaunchRunner(broken).plan()
    root = tmp_path / "root.launch.xml"
    root.write_text("<launchfile/>\n")
    with pytest.raises(UserError, match=r":1: <launchfile>: the root element must be <launch>"):
        LaunchRunner(root).plan()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('<node exec="x" if="true" unless="false"/>', "'if' and 'unless' cannot be used together"),
        ('<executable cmd="echo" respawn_delay="-1"/>', "respawn_delay -1.0 must be a number of seconds >= 0"),
        ('<executable cmd="echo" if="maybe"/>', "if 'maybe' is not a boolean"),
        ('<executable cmd="echo" if="$(var nope)"/>', "<executable>: $(var nope): no launch argument or <let> named 'nope'"),
        ('<node exec="echo" respawn="$(env NOPE_NOT_SET)"/>', "<node>: $(env NOPE_NOT_SET): environment variable"),
        ('<node pkg="robot_stack" exec="no_such_exec"/>', "executable 'no_such_exec' of package 'robot_stack' not found"),
        ('<node pkg="robot_stack" exec="topic_probe" name="bad name"/>', "invalid node name 'bad name'"),
        ('<node exec="x"><param name="p"/></node>', "<param>: missing required attribute 'value'"),
        ('<node exec="x"><remap from="a"/></node>', "<remap>: missing required attribute 'to'"),
        ('<group ns="x"/>', "unknown attribute 'ns'"),
        ('<node exec="echo" on_exit="restart"/>', "on_exit='restart': only on_exit=\"shutdown\" is supported"),
        ('<include file="nowhere.launch.xml"/>', "use $(dirname)/..."),
        ('<node exec="x"><param from="/no/such.yaml"/></node>', "parameter file '/no/such.yaml' not found"),
        ('<executable cmd="echo"><param name="a" value="1"/></executable>', "not allowed inside <executable>"),
        ('<executable cmd="no_such_command_xyz --flag"/>', "command 'no_such_command_xyz' not found on PATH"),
        ('<executable cmd="/proc/version"/>', "'/proc/version' is not an executable file"),
        ('<executable cmd="echo" cwd="/no/such/dir"/>', "cwd '/no/such/dir' is not a directory"),
    ],
)
def test_other_problems(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "case.launch.xml"
    path.write_text(f"<launch>\n  {body}\n</launch>\n")
    with pytest.raises(UserError) as info:
        LaunchRunner(path).plan()
    assert str(info.value).startswith(f"{path}:2: <")
    assert str(info.value).count(".launch.xml:") == 1
    assert problem in str(info.value)


def test_cli_prints_one_line_and_exits_2() -> None:
    path = FILES / "bad_attribute.launch.xml"
    result = subprocess.run([ROBOT_STACK, "launch", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"robot-stack: error: {path}:4: <node>: unknown attribute 'nmae' "
        "(allowed: args, cwd, exec, exec_name, if, launch-prefix, name, namespace, on_exit, output, pkg, "
        "respawn, respawn_delay, respawn_max_retries, ros_args, unless)"
    ]


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.launch.xml", tmp_path / "b.launch.xml"
    a.write_text('<launch>\n  <include file="$(dirname)/b.launch.xml"/>\n</launch>\n')
    b.write_text('<launch>\n\n  <include file="$(dirname)/a.launch.xml"/>\n</launch>\n')
    with pytest.raises(UserError, match=rf"^{b}:3: <include>: a.launch.xml includes itself \(through a.launch.xml -> b.launch.xml\)$"):
        LaunchRunner(a).plan()


def test_a_typo_of_a_declared_argument_names_it() -> None:
    result = subprocess.run([ROBOT_STACK, "launch", "robot_stack", "teleop.launch.xml", "dataset_path:=x", "--print"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "warning: argument `dataset_path` is not declared in teleop.launch.xml: did you mean `dataset`?" \
        in result.stderr
    assert "argument `zzz` is not declared in teleop.launch.xml (set anyway, as ros2 launch does)" in \
        subprocess.run([ROBOT_STACK, "launch", "robot_stack", "teleop.launch.xml", "zzz:=1", "--print"],
                       capture_output=True, text=True, timeout=60).stderr


def test_teleop_without_a_dataset_says_that_nothing_is_recorded() -> None:
    from robot_stack.resources import share_dir

    runner = LaunchRunner(share_dir() / "launch" / "teleop.launch.xml", {"device": "expert"})
    labels = [spec.label for spec in runner.plan()]
    assert not any(label.startswith("recorder_node") for label in labels), labels
    assert runner.messages == ["no dataset given: nothing is recorded (pass dataset:=data/name.zarr to record)"]
    runner = LaunchRunner(share_dir() / "launch" / "teleop.launch.xml", {"device": "expert", "dataset": "d.zarr"})
    assert any(spec.label.startswith("recorder_node") for spec in runner.plan()) and not runner.messages


def test_a_driver_whose_device_is_missing_ends_the_launch_with_its_error() -> None:
    """Respawned a few times (respawn_max_retries), then the launch stops with the driver's own error line
    (it used to be restarted forever, 12 times in 20 s)."""
    result = subprocess.run([ROBOT_STACK, "launch", "robot_stack", "hardware.launch.xml", "port:=/dev/ttyNOPE0",
                             "cameras:=none"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("process has died") == 6, result.stdout  # the first run and 5 respawns
    assert "not respawned again (respawn_max_retries=5)" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("robot-stack launch: servo_arm_node-1 exited with code 2 after 5 respawns: ")
    assert "/dev/ttyNOPE0" in last and last.endswith("; stopped the launch"), last


def test_dds_security_is_refused_where_fast_dds_has_no_security_plugins() -> None:
    import os

    env = {**os.environ, "ROS_SECURITY_ENABLE": "true"}
    result = subprocess.run([ROBOT_STACK, "launch", "sim.launch.xml"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("robot-stack: error: ROS_SECURITY_ENABLE=true, but the Fast DDS of the PyPI wheels")
    assert "process started" not in result.stdout
