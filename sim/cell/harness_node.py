"""``cell_harness``: the lab's person at the emulated cell, for ROS tools that drive episodes.

It offers the harness channel under its own ``/cell_harness/`` namespace, apart from the robot
contract, so that an operator-like program (``expert_node``, the evaluation) can run episodes on
the cell exactly as it does on the twin, by remapping ``reset``, ``task_success`` and
``object_poses`` there. No policy or driver subscribes to it.

* ``/cell_harness/reset`` (Trigger): take the objects off the table, home the arm through the
  contract as a person with a teach pendant would (joint commands to the profile's home pose until
  ``joint_states`` reach it), then put the objects somewhere new at random and start an episode;
* ``/cell_harness/task_success`` (Trigger): the cell's judgement, ``success=... progress=...`` as the twin;
* ``/cell_harness/object_poses`` (PoseArray): where the objects are as the person sees them relative to
  the gripper (``objects_seen``: in the arm's own frame, its calibration error included, as eye-hand
  coordination places them).

Parameters: ``robot``, ``harness`` (the cell's harness URL), ``home_tolerance`` (rad),
``home_timeout`` (s), ``object_rate_hz`` (0: no object_poses). The services appear once the cell answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future

from robot_stack import convert
from robot_stack.contract import Contract, Service, Topic
from robot_stack.errors import UserError
from robot_stack.node import run_node
from robot_stack.node_options import read_options
from robot_stack.typed_config import field
from robot_stack.profile import load_profile
from robot_stack.sim.cell.harness import HarnessClient

NAMESPACE = "/cell_harness"
HOME_RATE_HZ = 20.0
CELL_WAIT_S = 60.0
"""How long to wait for the cell to answer at start (it may still be building its scene)."""


@dataclass(frozen=True)
class HarnessOptions:
    robot: str = field("robot profile name or YAML path", default="so101")
    harness: str = field("the cell's harness URL", default="http://127.0.0.1:8766/harness")
    home_tolerance: float = field("rad: every joint this near home ends homing", default=0.05)
    home_timeout: float = field("s: give up homing after this long", default=8.0)
    object_rate_hz: float = field("object_poses rate, Hz (0: none)", default=30.0)


class CellHarnessNode(Node):
    def __init__(self) -> None:
        super().__init__("cell_harness")
        options = read_options(self, HarnessOptions)
        self.profile = load_profile(options.robot)
        url, rate = options.harness, options.object_rate_hz
        self.tolerance, self.timeout = options.home_tolerance, options.home_timeout
        if self.profile.sim is None or not self.profile.sim.home:
            raise UserError(f"robot {self.profile.name!r} has no sim.home: the harness homes the arm there")
        self.harness = HarnessClient(url)
        self.harness.wait(CELL_WAIT_S)
        self.home = np.array(self.profile.sim.home, dtype=float)
        c = self.contract = Contract(self.profile)
        self.names = self.profile.all_joint_names
        self.n_arm = len(self.profile.joints)
        self.position: np.ndarray | None = None
        # reset awaits the homing that the timer and joint_states drive: one reentrant group lets them run meanwhile
        group = ReentrantCallbackGroup()
        self.create_subscription(c.joint_states.type, c.joint_states.name, self._on_joints, c.joint_states.qos,
                                 callback_group=group)
        self.arm_pub = c.publisher(self, c.joint_commands)
        self.gripper_pub = c.publisher(self, c.gripper_commands) if c.gripper_commands else None
        self.create_service(c.reset_service.type, f"{NAMESPACE}/reset", self._on_reset, callback_group=group)
        c.service(self, Service(f"{NAMESPACE}/task_success", c.task_success_service.type), self._on_success)
        self.object_pub = c.publisher(self, Topic(f"{NAMESPACE}/object_poses", c.object_poses.type, c.object_poses.qos))
        self.homing: Future | None = None
        self.homing_until = 0.0
        self.create_timer(1.0 / HOME_RATE_HZ, self._home_step, callback_group=group)
        if rate > 0:
            self.create_timer(1.0 / rate, self._publish_objects)
        self.get_logger().info(f"harness of the cell at {url} on {NAMESPACE}/ (reset, task_success, object_poses)")

    def _on_joints(self, msg) -> None:
        try:
            self.position = convert.joint_state_arrays(msg, self.names)[0]
        except convert.MessageError:
            pass

    # -- reset: home through the contract, then place the objects -----------------------------------
    async def _on_reset(self, request, response):
        try:
            self.harness.clear()
        except UserError as err:
            response.success, response.message = False, str(err)
            return response
        self.homing = Future(executor=self.executor)
        self.homing_until = time.monotonic() + self.timeout
        homed = await self.homing
        try:
            state = self.harness.reset()
        except UserError as err:
            response.success, response.message = False, str(err)
            return response
        response.success = True
        response.message = (f"reset with seed {state['seed']}" + ("" if homed else
                            f" (the arm did not reach home within {self.timeout:g} s)"))
        return response

    def _home_step(self) -> None:
        if self.homing is None:
            return
        from std_msgs.msg import Float64MultiArray

        self.arm_pub.publish(Float64MultiArray(data=[float(v) for v in self.home[: self.n_arm]]))
        if self.gripper_pub is not None and len(self.home) > self.n_arm:
            self.gripper_pub.publish(Float64MultiArray(data=[float(self.home[self.n_arm])]))
        near = self.position is not None and float(np.max(np.abs(self.position - self.home))) < self.tolerance
        if near or time.monotonic() > self.homing_until:
            if not near:
                self.get_logger().warning(f"the arm did not reach home within {self.timeout:g} s")
            self.homing.set_result(near)
            self.homing = None

    # -- ground truth -------------------------------------------------------------------------------
    def _on_success(self, request, response):
        try:
            s = self.harness.state()
        except UserError as err:
            response.success, response.message = False, str(err)
            return response
        response.success = bool(s["success"])
        response.message = (f"success={str(response.success).lower()} progress={s['progress']:.3f} "
                            f"time={s['episode_time']:.2f} seed={s['seed']}")
        return response

    def _publish_objects(self) -> None:
        from geometry_msgs.msg import Pose, PoseArray

        try:
            state = self.harness.state()
        except UserError as err:
            self.get_logger().warning(str(err), throttle_duration_sec=5.0)
            return
        msg = PoseArray()
        msg.header.stamp = convert.to_stamp(state["time"])
        msg.header.frame_id = self.profile.frames.base
        for row in state["objects_seen"]:
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in row[:3])
            pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in row[3:])
            msg.poses.append(pose)
        self.object_pub.publish(msg)


def main() -> None:
    run_node(CellHarnessNode)


if __name__ == "__main__":
    main()
