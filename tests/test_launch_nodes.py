"""Two real topic_probe nodes started by the runner, checked over DDS: names, topics, parameters, argv."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import wait_for

from robot_stack.launcher import LaunchRunner

FILES = Path(__file__).resolve().parent / "launch_files"
ROBOT_STACK = str(Path(sys.prefix) / "bin" / "robot-stack")
BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service")


def printed_argvs(path: Path, *args: str) -> dict[str, list[str]]:
    """``robot-stack launch --print``: label -> argv."""
    result = subprocess.run([ROBOT_STACK, "launch", str(path), *args, "--print"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out, label = {}, None
    for line in result.stdout.splitlines():
        if line.startswith("["):
            label = line[1:line.index("]")]
        elif line.startswith("  argv: "):
            out[label] = shlex.split(line[len("  argv: "):])
    return out


def test_launched_probes_have_the_names_topics_and_parameters_ros2_launch_gives(ros) -> None:
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import GetParameters
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    infos = {name: ros.collect(String, f"{name}/info", latched) for name in ("/robot1/talker", "/robot1/sub/listener")}
    chatter = ros.collect(String, "/robot1/remapped_chatter")
    printed = printed_argvs(FILES / "probes.launch.xml", "ns:=robot1", "gain:=0.25")

    buf = io.StringIO()
    runner = LaunchRunner(FILES / "probes.launch.xml", {"ns": "robot1", "gain": "0.25"}, stdout=buf, stderr=buf).start()
    try:
        wait_for(lambda: all(infos.values()), 60, f"both probes' reports; output:\n{buf.getvalue()}")
        talker = json.loads(infos["/robot1/talker"][0][1].data)
        listener = json.loads(infos["/robot1/sub/listener"][0][1].data)

        assert (talker["namespace"], talker["name"]) == ("/robot1", "talker")
        assert (listener["namespace"], listener["name"]) == ("/robot1/sub", "listener")
        assert talker["topics"] == {"info": "/robot1/talker/info", "publish": "/robot1/remapped_chatter"}
        assert listener["topics"] == {"info": "/robot1/sub/listener/info", "echo": "/robot1/remapped_chatter"}
        for report in (talker, listener):
            for name in BUILTIN_PARAMETERS:
                report["parameters"].pop(name, None)
        assert talker["parameters"] == {
            "from_file": 42,           # <param from="probe_params.yaml"> (a /** section)
            "names": ["a", "b"],
            "gain": 0.25,              # inline, after the file: wins; YAML-typed to a double
            "label": "talker of robot1",
            "flags": [True, False],
            "nested.depth": 3,
        }
        assert listener["parameters"] == {"mode": "listen"}

        # The ROS graph agrees, and the remapped topic connects the two nodes.
        graph = lambda: set(ros.node.get_node_names_and_namespaces())  # noqa: E731
        wait_for(lambda: {("talker", "/robot1"), ("listener", "/robot1/sub")} <= graph(), 30, "nodes in the graph")
        wait_for(lambda: len(chatter) >= 2, 30, "messages on /robot1/remapped_chatter")
        assert json.loads(chatter[-1][1].data)["from"] == "/robot1/talker"
        wait_for(lambda: "[topic_probe-2] /robot1/sub/listener heard: " in buf.getvalue(), 30, "the listener's echo")
        reply = ros.call(GetParameters, "/robot1/talker/get_parameters", GetParameters.Request(names=["gain", "label"]))
        assert reply.values[0].type == ParameterType.PARAMETER_DOUBLE and reply.values[0].double_value == 0.25
        assert reply.values[1].string_value == "talker of robot1"

        # --print shows exactly the argv each process was started with (as the process itself saw it).
        assert printed == {spec.label: spec.argv for spec in runner.processes}
        assert talker["argv"] == printed["topic_probe-1"]
        assert listener["argv"] == printed["topic_probe-2"]
        for label, pids in runner.pids().items():
            cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode().split("\0")[:-1]
            assert cmdline[-len(printed[label]) + 1:] == printed[label][1:]
    finally:
        assert runner.stop(timeout=30) == 0
    assert "[INFO] [topic_probe-1]: process started with pid" in buf.getvalue()
