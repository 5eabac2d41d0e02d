"""teleop_node: any teleop device -> the contract's command topics and episode services.

While the operator has control (deadman / intervention toggle) the node streams a
``cartesian/target_twist`` (or, for leader arms, ``<controller>/commands`` + gripper) at
``rate_hz`` and publishes ``teleop/intervention`` = true; when control is given back it sends one
zero twist and falls silent, so a policy (or the arm's watchdog hold) takes over. Gripper toggles
go to ``<gripper_controller>/commands``; episode keys call the recorder's ``episode/*`` services.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Bool, Float64MultiArray

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.drivers.teleop.device import TeleopDevice, TeleopInput
from robot_stack.errors import UserError
from robot_stack.node import run_node
from robot_stack.node_options import read_options
from robot_stack.profile import RobotProfile, load_profile
from robot_stack.typed_config import field

DEVICES = ("keyboard", "gamepad", "spacemouse", "leader")
SPEED_STEP = 1.25


def make_device(kind: str, path: str, profile: RobotProfile) -> TeleopDevice:
    if kind == "keyboard":
        from robot_stack.drivers.teleop.keyboard import KeyboardDevice

        return KeyboardDevice(path)
    if kind == "gamepad":
        from robot_stack.drivers.teleop.gamepad import GamepadDevice

        return GamepadDevice(path)
    if kind == "spacemouse":
        from robot_stack.drivers.teleop.spacemouse import SpaceMouseDevice

        return SpaceMouseDevice(path)
    if kind == "leader":
        from robot_stack.drivers.teleop.leader import LeaderArmDevice

        return LeaderArmDevice(profile, path)
    raise UserError(f"unknown teleop device {kind!r} (use one of: {', '.join(DEVICES)})")


@dataclass(frozen=True)
class TeleopOptions:
    robot: str = field("robot profile name or YAML path", default="so101")
    device: str = field(f"teleop device: {', '.join(DEVICES)}", default="keyboard")
    device_path: str = field("device path (evdev node, HID path, or leader arm serial port)", default="")
    max_linear: float = field("full-scale linear speed, m/s", default=0.10)
    max_angular: float = field("full-scale angular speed, rad/s", default=0.6)
    speed: float = field("initial speed scale (changed with the speed keys)", default=1.0)
    rate_hz: float = field("device polling and command rate, Hz", default=30.0)
    start_in_control: bool = field("start with the operator in control", default=False)

    def __post_init__(self) -> None:
        if not (self.rate_hz > 0 and self.max_linear > 0 and self.max_angular > 0 and self.speed > 0):
            raise ValueError("rate_hz, max_linear, max_angular and speed must be positive")


class TeleopNode(Node):
    def __init__(self, device: TeleopDevice | None = None, profile: RobotProfile | None = None, **kwargs):
        super().__init__("teleop", **kwargs)
        options = read_options(self, TeleopOptions)
        self.profile = profile or load_profile(options.robot)
        self.max_linear, self.max_angular, self.speed = options.max_linear, options.max_angular, options.speed
        rate = options.rate_hz
        self.in_control = options.start_in_control
        self.device = device if device is not None else make_device(options.device, options.device_path, self.profile)
        if self.in_control and hasattr(self.device, "deadman"):
            self.device.deadman = True
        c = self.contract = Contract(self.profile)
        self.twist_pub = c.publisher(self, c.target_twist)
        self.command_pub = c.publisher(self, c.joint_commands)
        self.gripper_pub = c.publisher(self, c.gripper_commands) if c.gripper_commands else None
        self.intervention_pub = c.publisher(self, c.intervention)
        self.estop_pub = c.publisher(self, c.estop)
        self.episode_clients = {name: c.client(self, srv) for name, srv in c.episode_services.items()}
        self.gripper_closed = False
        self.create_timer(1.0 / rate, self.tick)
        self.get_logger().info(f"teleop with {self.device.name}; "
                               + ("operator in control" if self.in_control else "policy in control (toggle to take over)"))

    def tick(self) -> None:
        inp = self.device.poll()
        if inp.estop:
            self.estop_pub.publish(Bool(data=True))
            self.get_logger().error("E-STOP sent")
        if inp.speed_change:
            self.speed = float(np.clip(self.speed * SPEED_STEP ** inp.speed_change, 0.05, 4.0))
            self.get_logger().info(f"speed x{self.speed:.2f}")
        if inp.episode:
            self._episode(inp.episode)
        was_in_control = self.in_control
        self.in_control = bool(inp.deadman)
        if self.in_control != was_in_control:
            self.get_logger().info("operator took control" if self.in_control else "control given back")
        self.intervention_pub.publish(Bool(data=self.in_control))
        if self.in_control:
            self._command(inp)
        elif was_in_control and inp.joints is None:
            self._publish_twist(np.zeros(3), np.zeros(3))

    def _command(self, inp: TeleopInput) -> None:
        if inp.joints is not None:
            n = len(self.profile.joints)
            self.command_pub.publish(Float64MultiArray(data=[float(v) for v in inp.joints[:n]]))
            if self.gripper_pub is not None and len(inp.joints) > n:
                self.gripper_pub.publish(Float64MultiArray(data=[float(inp.joints[n])]))
            return
        scale = self.speed
        self._publish_twist(inp.linear * self.max_linear * scale, inp.angular * self.max_angular * scale)
        if self.gripper_pub is None:
            return
        g = self.profile.gripper
        assert g is not None
        if inp.gripper is not None:
            self.gripper_pub.publish(Float64MultiArray(data=[g.open + float(inp.gripper) * (g.closed - g.open)]))
        elif inp.gripper_toggle:
            self.gripper_closed = not self.gripper_closed
            self.gripper_pub.publish(Float64MultiArray(data=[g.closed if self.gripper_closed else g.open]))

    def _publish_twist(self, linear: np.ndarray, angular: np.ndarray) -> None:
        self.twist_pub.publish(convert.make_twist(linear, angular, self.profile.frames.base, self.get_clock().now().to_msg()))

    def _episode(self, event: str) -> None:
        names = ["discard", "start"] if event == "rerecord" else [event]
        for name in names:
            client = self.episode_clients[name]
            if not client.service_is_ready():
                self.get_logger().warning(f"episode/{name}: no recorder is running")
                continue
            future = client.call_async(client.srv_type.Request())
            future.add_done_callback(lambda f, n=name: self.get_logger().info(f"episode/{n}: {f.result().message}"))

    def close(self) -> None:
        self.device.close()


def main() -> None:
    run_node(TeleopNode)
