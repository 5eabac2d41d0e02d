"""``topic_probe``: a small node that reports how it was launched, and publishes or echoes topics.

On start it publishes one latched JSON report (``std_msgs/String``) on ``~/info``: its node name,
namespace, fully qualified name, every parameter (declared automatically from ``--params-file``
and ``-p`` overrides), the resolved names of the topics it uses (remaps applied), its argv and pid.
That is what a launch file produced, checked from outside over DDS.

    topic_probe --publish chatter --rate 5          # JSON counter messages on 'chatter'
    topic_probe --echo chatter                       # print each message on 'chatter'
    ros2 run robot_stack topic_probe --ros-args -r __ns:=/demo -p gain:=2.0

``--exit-after S [--exit-code N]`` makes it exit on its own (to exercise supervisors and respawn).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

INFO_TOPIC = "~/info"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="topic_probe",
        description="Report the node's resolved name, namespace, parameters and topics as JSON on ~/info; "
        "optionally publish a counter or echo a topic (std_msgs/String).",
    )
    p.add_argument("--publish", metavar="TOPIC", help="publish JSON counter messages on TOPIC (relative names follow the namespace)")
    p.add_argument("--rate", type=float, default=2.0, help="publish rate in Hz")
    p.add_argument("--echo", metavar="TOPIC", help="print every message received on TOPIC to stdout")
    p.add_argument("--exit-after", type=float, metavar="S", help="exit on its own after S seconds")
    p.add_argument("--exit-code", type=int, default=0, help="exit code used with --exit-after")
    return p


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def make_probe(options: argparse.Namespace):  # rclpy node
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    class TopicProbe(Node):
        def __init__(self) -> None:
            super().__init__(
                "topic_probe",
                allow_undeclared_parameters=True,
                automatically_declare_parameters_from_overrides=True,
            )
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self._info = self.create_publisher(String, INFO_TOPIC, latched)
            self._count = 0
            self._pub = None
            topics: dict[str, str] = {"info": self._info.topic_name}
            if options.publish:
                self._pub = self.create_publisher(String, options.publish, 10)
                topics["publish"] = self._pub.topic_name
                self.create_timer(1.0 / max(options.rate, 1e-3), self._tick)
            if options.echo:
                sub = self.create_subscription(String, options.echo, self._on_message, 10)
                topics["echo"] = sub.topic_name
            if options.exit_after is not None:
                self._deadline = time.monotonic() + options.exit_after
                self.create_timer(0.05, self._maybe_exit)
            self.report = {
                "name": self.get_name(),
                "namespace": self.get_namespace(),
                "fully_qualified_name": self.get_fully_qualified_name(),
                "parameters": self._parameters_dict(),
                "topics": topics,
                "argv": sys.argv,
                "pid": os.getpid(),
            }
            self._info.publish(String(data=json.dumps(self.report, sort_keys=True)))
            self.get_logger().info(f"ready: {json.dumps(self.report['topics'])}")

        def _parameters_dict(self) -> dict[str, Any]:
            names = sorted(self.list_parameters([], 0).names)
            return {p.name: _plain(p.value) for p in self.get_parameters(names)}

        def _tick(self) -> None:
            self._count += 1
            assert self._pub is not None
            self._pub.publish(String(data=json.dumps({"from": self.get_fully_qualified_name(), "count": self._count})))

        def _on_message(self, msg: String) -> None:
            print(f"{self.get_fully_qualified_name()} heard: {msg.data}", flush=True)

        def _maybe_exit(self) -> None:
            if time.monotonic() >= self._deadline:
                self.get_logger().info(f"--exit-after reached, exiting with code {options.exit_code}")
                raise SystemExit(options.exit_code)

    return TopicProbe()


def main() -> None:
    from robot_stack.resources import apply_ros_environment

    apply_ros_environment()
    from rclpy.utilities import remove_ros_args

    options = build_parser().parse_args(remove_ros_args(sys.argv)[1:])
    from robot_stack.node import run_node

    run_node(lambda: make_probe(options))


if __name__ == "__main__":
    main()
