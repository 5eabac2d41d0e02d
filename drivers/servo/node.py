"""``servo_arm_node``: the contract's arm interface on a real servo bus (Dynamixel or Feetech).

ArmNode (joint_states, ee_pose, trajectory/forward/gripper/Cartesian commands, safety, watchdog,
e-stop, diagnostics) around a ServoBusBackend. Parameters:

* ``robot`` (default ``so101``): robot profile name or YAML path (servo IDs, models, calibration).
* ``port`` (default: the profile's ``hardware.port``): serial port of the bus, e.g. ``/dev/ttyACM0``.
* ``calibration`` (default: the profile's ``hardware.calibration``): joint calibration YAML.
* ``retries`` (default 3): re-reads of a servo after a bad or missing status packet.
* ``estop_file`` (default: one per node under ``$XDG_STATE_HOME/robot_stack/estop``): the e-stop latch
  survives restarts: a driver that comes back (respawn, crash, reboot) starts stopped, with the
  servos' torque state read back (holding servos keep holding, relaxed ones stay relaxed), until
  ``estop/set`` releases it.
* ``thread_priority`` (default 50, as ros2_control's): ``SCHED_FIFO`` priority of the control thread, with
  the e-stop one above and the command callbacks one below, so that none of them waits for a core on a
  loaded machine; 0 = normal scheduling.
  Without the permission (root, ``CAP_SYS_NICE`` or an ``rtprio`` limit) the node logs one line and runs
  with normal scheduling.

A servo that does not answer stops the node with one line naming the servo and the port.
"""

from __future__ import annotations

from dataclasses import dataclass

from robot_stack.node import run_node
from robot_stack.node_options import declare_options, read_options_before
from robot_stack.realtime import DEFAULT_PRIORITY
from robot_stack.typed_config import field

NODE_NAME = "servo_arm"


@dataclass(frozen=True)
class ServoArmOptions:
    robot: str = field("robot profile name or YAML path", default="so101")
    port: str = field("serial port (default: the profile's hardware.port)", default="")
    calibration: str = field("joint calibration YAML (default: the profile's)", default="")
    retries: int = field("re-reads of a servo after a bad or missing status packet", default=3)
    estop_file: str = field("where the e-stop latch survives restarts ('' = per node under "
                            "$XDG_STATE_HOME/robot_stack/estop, 'none' = not kept)", default="")
    thread_priority: int = field("SCHED_FIFO priority of the control loop, the e-stop one above, commands one "
                                 "below (0 = normal scheduling; as ros2_control's, needs root, CAP_SYS_NICE or "
                                 "an rtprio limit)",
                                 default=DEFAULT_PRIORITY)

    def __post_init__(self) -> None:
        if self.thread_priority != 0 and not 2 <= self.thread_priority <= 98:
            raise ValueError(f"thread_priority is {self.thread_priority}: use 2 to 98, or 0 (normal scheduling)")


def make_node():
    from robot_stack.arm.estop_store import EStopStore, default_path
    from robot_stack.arm.node import ArmNode
    from robot_stack.drivers.servo.backend import ServoBusBackend
    from robot_stack.profile import load_profile

    # Options are read by a short-lived node of the same name (so launch-file parameters and remaps
    # apply to it) because the backend must be open before ArmNode's first read.
    options = read_options_before(NODE_NAME, ServoArmOptions)
    profile = load_profile(options.robot)
    store = None
    if options.estop_file != "none":
        from rclpy.node import Node

        probe = Node(NODE_NAME)  # the resolved name (namespace and remaps applied) names the latch file
        name = probe.get_fully_qualified_name()
        probe.destroy_node()
        store = EStopStore(options.estop_file or default_path(name))
    stopped = store is not None and store.load() is not None
    backend = ServoBusBackend(profile, port=options.port or None, calibration=options.calibration or None,
                              retries=options.retries, torque_on=not stopped)
    try:
        node = ArmNode(profile, backend, node_name=NODE_NAME, estop_store=store,
                       thread_priority=options.thread_priority)
    except BaseException:
        backend.close()
        raise
    declare_options(node, options)  # visible to parameter tools
    node.get_logger().info(
        f"{profile.name}: {len(backend.ids)} {profile.hardware.backend} servos on {backend.port_name} "
        f"at {profile.control.rate_hz:g} Hz" + (f"; e-stop latch {store.path}" if store else ""))
    return node


def main() -> None:
    run_node(make_node)


if __name__ == "__main__":
    main()
