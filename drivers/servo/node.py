"""``servo_arm_node``: the contract's arm interface on a real servo bus (Dynamixel or Feetech).

ArmNode (joint_states, ee_pose, trajectory/forward/gripper/Cartesian commands, safety, watchdog,
e-stop, diagnostics) around a ServoBusBackend. Parameters:

* ``robot`` (default ``so101``): robot profile name or YAML path (servo IDs, models, calibration).
* ``port`` (default: the profile's ``hardware.port``): serial port of the bus, e.g. ``/dev/ttyACM0``.
* ``calibration`` (default: the profile's ``hardware.calibration``): joint calibration YAML.
* ``retries`` (default 3): re-reads of a servo after a bad or missing status packet.

A servo that does not answer stops the node with one line naming the servo and the port.
"""

from __future__ import annotations

from robot_stack.node import declare, run_node

NODE_NAME = "servo_arm"


def make_node():  # noqa: ANN201
    from rclpy.node import Node

    from robot_stack.arm.node import ArmNode
    from robot_stack.drivers.servo.backend import ServoBusBackend
    from robot_stack.profile import load_profile

    # Parameters are read by a short-lived node of the same name (so launch-file parameters and
    # remaps apply to it) because the backend must be open before ArmNode's first read.
    params = Node(NODE_NAME)
    try:
        robot = declare(params, "robot", "so101", "robot profile name or YAML path")
        port = declare(params, "port", "", "serial port (default: the profile's hardware.port)")
        calibration = declare(params, "calibration", "", "joint calibration YAML (default: the profile's)")
        retries = declare(params, "retries", 3, "re-reads of a servo after a bad or missing status packet")
    finally:
        params.destroy_node()
    profile = load_profile(robot)
    backend = ServoBusBackend(profile, port=port or None, calibration=calibration or None, retries=retries)
    try:
        node = ArmNode(profile, backend, node_name=NODE_NAME)
    except BaseException:
        backend.close()
        raise
    for name, value in (("robot", robot), ("port", port), ("calibration", calibration), ("retries", retries)):
        node.declare_parameter(name, value)  # visible to parameter tools
    node.get_logger().info(
        f"{profile.name}: {len(backend.ids)} {profile.hardware.backend} servos on {backend.port_name} "
        f"at {profile.control.rate_hz:g} Hz")
    return node


def main() -> None:
    run_node(make_node)


if __name__ == "__main__":
    main()
