"""Launch plans (nothing started): argv, namespaces, scoping and parameter files as ros2 launch builds them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from robot_stack.errors import UserError
from robot_stack.launcher import LaunchRunner, resolve_launch_file
from robot_stack.launcher.actions import ProcessSpec
from robot_stack.resources import fastdds_profile

FILES = Path(__file__).resolve().parent / "launch_files"
PROBE = shutil.which("topic_probe", path=str(Path(sys.prefix) / "bin"))


def by_label(specs: list[ProcessSpec]) -> dict[str, ProcessSpec]:
    return {s.label.rsplit("-", 1)[0]: s for s in specs}


def params_of(spec: ProcessSpec) -> list[dict]:
    files = [spec.argv[i + 1] for i, a in enumerate(spec.argv) if a == "--params-file"]
    return [yaml.safe_load(Path(f).read_text()) for f in files]


def test_probe_nodes_argv_matches_ros2_launch() -> None:
    talker, listener = LaunchRunner(FILES / "probes.launch.xml", {"ns": "robot1"}).plan()
    assert talker.label == "topic_probe-1" and listener.label == "topic_probe-2"
    assert talker.node_name == "/robot1/talker" and listener.node_name == "/robot1/sub/listener"
    argv = talker.argv
    assert argv[:6] == [PROBE, "--publish", "chatter", "--rate", "10", "--ros-args"]
    assert argv[6:10] == ["-r", "__node:=talker", "-r", "__ns:=/robot1"]
    assert argv[10:12] == ["--params-file", str(FILES / "probe_params.yaml")]
    assert argv[-2:] == ["-r", "chatter:=remapped_chatter"]
    # One temporary file per inline <param>, keyed by the node's full name (launch_ros does the same).
    inline = params_of(talker)[1:]
    assert inline == [
        {"/robot1/talker": {"ros__parameters": {"gain": 2.5}}},
        {"/robot1/talker": {"ros__parameters": {"label": "talker of robot1"}}},
        {"/robot1/talker": {"ros__parameters": {"flags": [True, False]}}},
        {"/robot1/talker": {"ros__parameters": {"nested": {"depth": 3}}}},
    ]
    assert listener.argv[-2:] == ["-r", "heard:=/robot1/remapped_chatter"]
    assert listener.env["PROBE_ROLE"] == "listener" and "PROBE_ROLE" not in talker.env
    for spec in (talker, listener):
        assert spec.env["FASTDDS_DEFAULT_PROFILES_FILE"] == os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", str(fastdds_profile()))
        assert sys.prefix in spec.env["AMENT_PREFIX_PATH"].split(os.pathsep)


def test_condition_drops_a_node() -> None:
    specs = LaunchRunner(FILES / "probes.launch.xml", {"with_listener": "False"}).plan()
    assert [s.node_name for s in specs] == ["/demo/talker"]


def test_scoping_rules() -> None:
    specs = by_label(LaunchRunner(FILES / "scoping.launch.xml").plan())
    # <group> is scoped: let, set_env and push_ros_namespace do not leak out.
    assert specs["inner_echo"].argv == ["echo", "inner"] and specs["inner_echo"].env["PROBE_LEVEL"] == "group"
    assert specs["outer_echo"].argv == ["echo", "outer"] and specs["outer_echo"].env["PROBE_LEVEL"] == "top"
    assert specs["after_unscoped"].argv == ["echo", "yes"]
    # forwarding="false" starts from no configurations and the initial environment.
    assert specs["not_forwarded"].argv == ["echo", "cleared", os.environ.get("PROBE_LEVEL", "unset")]
    # <include> sets its args in the including scope.
    assert specs["include_not_scoped"].argv == ["echo", "from_parent"]
    assert "PROBE_LEVEL" not in specs["after_unset"].env
    assert specs["real"].argv == ["echo", "real"] and "sim" not in specs


def test_namespace_and_name_rules() -> None:
    specs = {s.label: s for s in LaunchRunner(FILES / "scoping.launch.xml").plan()}
    nodes = {s.label: s for s in specs.values() if s.argv[0] == PROBE}
    absolute = next(s for s in nodes.values() if "__node:=absolute" in s.argv)
    assert "__ns:=/absolute" in absolute.argv and absolute.node_name == "/absolute/absolute"
    relative = next(s for s in nodes.values() if "__node:=relative" in s.argv)
    assert "__ns:=/scoped_ns/rel" in relative.argv
    child = next(s for s in nodes.values() if "__node:=child" in s.argv)
    assert child.argv[1:3] == ["--echo", "from_parent"] and "__ns:=/kid" in child.argv
    # A name without a namespace: no __ns remap and parameters keyed by the /** wildcard.
    unnamespaced = next(s for s in nodes.values() if "__node:=unnamespaced" in s.argv)
    assert not any(a.startswith("__ns:=") for a in unnamespaced.argv)
    assert unnamespaced.node_name == "/unnamespaced"  # as the graph shows it
    assert params_of(unnamespaced) == [{"/**": {"ros__parameters": {"a": 1}}}]
    # A namespace without a name: no __node remap; exec_name labels the output.
    anonymous = next(label for label in nodes if label.startswith("anonymous-"))
    assert nodes[anonymous].argv[1:] == ["--ros-args", "-r", "__ns:=/only_ns"]


def test_executable_options() -> None:
    spec = by_label(LaunchRunner(FILES / "scoping.launch.xml").plan())["prefixed"]
    assert spec.argv == ["nice", "-n", "5", "echo", "prefixed"]
    assert spec.respawn and spec.respawn_delay == 1.5 and spec.cwd == "/tmp"
    assert spec.env["EXTRA"] == "outer" and spec.env_changes["EXTRA"] == "outer"


def test_show_args_lists_declarations() -> None:
    infos = LaunchRunner(FILES / "probes.launch.xml").declared_args()
    assert [(i.name, i.default) for i in infos] == [("ns", "demo"), ("gain", "2.5"), ("with_listener", "true")]
    assert infos[0].description == "namespace pushed for both probes"


def test_packages_resolve_like_ros2(tmp_path: Path) -> None:
    from robot_stack.resources import share_dir

    path = tmp_path / "pkgs.launch.xml"
    path.write_text(
        "<launch>\n"
        '  <executable cmd="echo $(find-pkg-share robot_stack) $(find-pkg-share std_msgs) $(find-pkg-prefix std_msgs)"/>\n'
        '  <node pkg="no_such_package_xyz" exec="x"/>\n'
        "</launch>\n"
    )
    with pytest.raises(UserError, match=r":3: <node>: package 'no_such_package_xyz' not found on AMENT_PREFIX_PATH"):
        LaunchRunner(path).plan()
    path.write_text("\n".join(path.read_text().splitlines()[:2] + ["</launch>"]))
    (spec,) = LaunchRunner(path).plan()
    assert spec.argv == ["echo", str(share_dir()), f"{sys.prefix}/share/std_msgs", sys.prefix]


def test_package_form_looks_in_share_launch() -> None:
    with pytest.raises(UserError, match=r"no launch file 'missing.launch.xml' in package robot_stack \(it has: "):
        resolve_launch_file("robot_stack", "missing.launch.xml")
    assert resolve_launch_file(str(FILES / "probes.launch.xml")) == FILES / "probes.launch.xml"


def test_a_bare_file_name_is_a_shipped_launch_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`robot-stack launch sim.launch.xml` as the README writes it, from any directory (it used to
    be `launch file not found` outside the repository's launch/ folder)."""
    monkeypatch.chdir(tmp_path)
    from robot_stack.resources import share_dir

    assert resolve_launch_file("sim.launch.xml") == share_dir() / "launch" / "sim.launch.xml"
    with pytest.raises(UserError, match=r"^no file 'sim.launch.xm' here nor in package robot_stack \(did you mean sim.launch.xml\? it has"):
        resolve_launch_file("sim.launch.xm")
    with pytest.raises(UserError, match=r"^nowhere/sim.launch.xml: launch file not found$"):
        resolve_launch_file("nowhere/sim.launch.xml")
    (tmp_path / "sim.launch.xml").write_text("<launch/>\n")  # a file of that name here wins, as a path
    assert resolve_launch_file("sim.launch.xml") == tmp_path / "sim.launch.xml"


def test_params_folder_open_to_others_is_refused(tmp_path: Path) -> None:
    from robot_stack.launcher.actions import _write_content_addressed

    folder = tmp_path / "params"
    assert _write_content_addressed(folder, "a: 1\n").read_text() == "a: 1\n"
    folder.chmod(0o777)
    with pytest.raises(UserError, match="must be a directory owned by you with mode 700"):
        _write_content_addressed(folder, "a: 1\n")


def test_sros2_commands_make_one_enclave_per_node() -> None:
    from robot_stack.launcher.runner import sros2_commands
    from robot_stack.resources import share_dir

    specs = LaunchRunner(share_dir() / "launch" / "teleop.launch.xml", {"device": "keyboard", "dataset": "d.zarr"}).plan()
    text = sros2_commands(specs, "keys", "teleop.launch.xml")
    commands = [line for line in text.splitlines() if not line.startswith("#")]
    assert commands == ["ros2 security create_keystore keys", "ros2 security create_enclave keys /recorder",
                        "ros2 security create_enclave keys /teleop", "ros2 security create_enclave keys /twin"]
    assert "PyPI wheels has no security plugins" in text


def test_a_realsense_serial_reaches_the_node_as_a_string() -> None:
    """`front_device:=123456789012` (README) was typed as an integer by YAML and realsense_node exited 2,
    in both runners; hardware.launch.xml now says type="str", as launch_ros reads it."""
    from robot_stack.resources import share_dir

    args = {"front_driver": "realsense", "front_device": "123456789012", "wrist_driver": "realsense",
            "wrist_device": "017322071", "arm": "false"}
    specs = LaunchRunner(share_dir() / "launch" / "hardware.launch.xml", args).plan()
    serials = {spec.node_name: next(p["/**"]["ros__parameters"]["serial"] for p in params_of(spec)
                                    if "serial" in p["/**"]["ros__parameters"]) for spec in specs}
    assert serials == {"/front_camera": "123456789012", "/wrist_camera": "017322071"}


def test_runner_env_sets_variables_for_its_launch_only() -> None:
    """``LaunchRunner(env=...)``: e.g. a ROS domain of its own (``robot-stack demo``'s parallel recordings)."""
    specs = LaunchRunner(FILES / "probes.launch.xml", env={"ROS_DOMAIN_ID": "117"}).plan()
    assert specs and all(s.env["ROS_DOMAIN_ID"] == "117" for s in specs)
    assert all(s.env.get("ROS_DOMAIN_ID") == os.environ.get("ROS_DOMAIN_ID") for s in LaunchRunner(FILES / "probes.launch.xml").plan())
