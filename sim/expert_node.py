"""expert_node: a scripted expert that drives any arm over the contract, like a human teleoperator.

It subscribes to ``joint_states``, ``ee_pose`` and the twin's task state, and at the policy rate
publishes the same commands a leader-arm teleop device would: arm joint targets on
``<controller>/commands`` and the gripper on ``<gripper_controller>/commands``. With
``episodes`` > 0 it resets the twin (``reset`` service) before each episode, polls
``task_success`` and exits after that many episodes; with 0 it just acts (no resets) until stopped.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.node import declare, run_node
from robot_stack.profile import load_profile
from robot_stack.sim.experts import make_expert
from robot_stack.sim.observation import OBJECT_STATE_TOPIC, make_observation


class ExpertNode(Node):
    def __init__(self) -> None:
        super().__init__("expert")
        from std_msgs.msg import Float64MultiArray
        from std_srvs.srv import Trigger

        robot = declare(self, "robot", "so101", "robot profile name or path")
        task = declare(self, "task", "pick_cube", "task name or path")
        self.episodes = int(declare(self, "episodes", 0, "episodes to run with a reset before each (0: just act)"))
        self.profile = load_profile(robot)
        self.contract = c = Contract(self.profile)
        self.expert = make_expert(self.profile, task)
        self.names = self.profile.all_joint_names
        self.joints: tuple[np.ndarray, np.ndarray] | None = None
        self.ee: np.ndarray | None = None
        self.object_state: np.ndarray | None = None
        c.subscription(self, c.joint_states, self._on_joints)
        c.subscription(self, c.ee_pose, self._on_ee)
        self.create_subscription(Float64MultiArray, OBJECT_STATE_TOPIC,
                                 lambda m: setattr(self, "object_state", np.array(m.data)), 10)
        self.arm_pub = c.publisher(self, c.joint_commands)
        self.gripper_pub = c.publisher(self, c.gripper_commands) if c.gripper_commands else None
        self.reset_client = c.client(self, c.reset_service)
        self.success_client = self.create_client(Trigger, c.task_success_service.name)
        self.completed, self.successes = 0, 0
        self.pending = None
        self.state = "reset" if self.episodes > 0 else "act"
        self.steps = 0
        self.max_steps = int(self.expert.config.episode_seconds * self.profile.control.policy_rate_hz)
        self.create_timer(1.0 / self.profile.control.policy_rate_hz, self._step)

    def _on_joints(self, msg) -> None:  # noqa: ANN001
        try:
            pos, vel, _ = convert.joint_state_arrays(msg, self.names)
        except convert.MessageError as err:
            self.get_logger().error(f"joint_states: {err}", throttle_duration_sec=2.0)
            return
        self.joints = (pos, vel)

    def _on_ee(self, msg) -> None:  # noqa: ANN001
        pos, quat = convert.pose_arrays(msg)
        self.ee = np.concatenate([pos, quat])

    def _step(self) -> None:
        if self.pending is not None and not self.pending.done():
            return
        if self.state == "reset":
            if self.pending is None:
                if not self.reset_client.service_is_ready():
                    return
                self.pending = self.reset_client.call_async(self.reset_client.srv_type.Request())
                return
            self.get_logger().info(f"episode {self.completed + 1}: {self.pending.result().message}")
            self.pending, self.state, self.steps = None, "act", 0
            self.joints = self.ee = self.object_state = None  # wait for post-reset state
            self.expert.reset()
            return
        if self.state == "check":
            result = self.pending.result()
            self.pending = None
            if result.success or self.steps >= self.max_steps:
                self.completed += 1
                self.successes += int(result.success)
                self.get_logger().info(f"episode {self.completed}: {result.message} "
                                       f"({self.successes}/{self.completed} successful)")
                if self.completed >= self.episodes:
                    self.state = "done"
                    self.get_logger().info(f"done: {self.successes}/{self.completed} episodes successful")
                    self.context.try_shutdown()  # exit 0; the twin keeps holding its position
                    return
                self.state = "reset"
                return
            self.state = "act"
        if self.state != "act" or self.joints is None or self.ee is None:
            return
        if self.expert.config.kind and self.object_state is None:
            return
        obs = make_observation(self.joints[0], self.joints[1], self.ee[:3], self.ee[3:], self.object_state)
        action = self.expert.act({k: v.astype(float) for k, v in obs.items()})
        from std_msgs.msg import Float64MultiArray

        n_arm = len(self.profile.joints)
        self.arm_pub.publish(Float64MultiArray(data=[float(v) for v in action[:n_arm]]))
        if self.gripper_pub is not None:
            self.gripper_pub.publish(Float64MultiArray(data=[float(action[n_arm])]))
        self.steps += 1
        if self.episodes > 0 and self.steps % 5 == 0 and self.success_client.service_is_ready():
            self.pending = self.success_client.call_async(self.success_client.srv_type.Request())
            self.state = "check"


def main() -> None:
    run_node(ExpertNode)


if __name__ == "__main__":
    main()
