"""expert_node: a scripted expert that drives any arm over the contract, like a human teleoperator.

It subscribes to ``joint_states``, ``ee_pose`` and ``object_poses``, and at the policy rate
publishes the same commands a leader-arm teleop device would: arm joint targets on
``<controller>/commands`` and the gripper on ``<gripper_controller>/commands``. With
``episodes`` > 0 it resets the twin (``reset`` service) before each episode, polls
``task_success`` and exits after that many episodes; with 0 it just acts (no resets) until stopped.
When a recorder is running it also presses the episode buttons an operator would: ``episode/start``
after each reset, ``episode/save`` on success and ``episode/discard`` on a timeout (``keep_failures``
saves those too).

With ``lockstep`` (sim time, the twin's ``lockstep``), the twin waits at every half period until the
expert has acted and while a reset or an episode button is answered, so commands land at exact sim
times however fast the twin runs (a recording on sim time as clean as one in real time).

With ``intervene_probability`` > 0 it is a *scripted intervener* instead (for testing the human-in-
the-loop paths without a human): silent while a policy drives, it takes over with that probability
per policy step for ``intervene_steps`` steps (``teleop/intervention`` = true, its own commands), then
gives control back; after ``intervene_budget`` steps in total it stops intervening.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.node import run_node, steady_clock
from robot_stack.node_options import read_options
from robot_stack.profile import load_profile
from robot_stack.typed_config import field
from robot_stack.sim.experts import make_expert
from robot_stack.policies.observations import observation_dict
from robot_stack.tasks import object_state_from_poses

ACK_TIMEOUT = Duration(seconds=2.0)
START_TRIES = 50
"""Policy periods to wait before the first episode for a recorder's episode/start service to appear, and to ask
again while the recorder refuses (e.g. until its cameras stream), before acting unrecorded."""


def pose_rows(msg) -> np.ndarray:  # geometry_msgs/PoseArray
    """PoseArray -> (k, 7) rows of x, y, z, qx, qy, qz, qw."""
    return np.array([[p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y,
                      p.orientation.z, p.orientation.w] for p in msg.poses]).reshape(-1, 7)


@dataclass(frozen=True)
class ExpertOptions:
    robot: str = field("robot profile name or path", default="so101")
    task: str = field("task name or path", default="pick_cube")
    episodes: int = field("episodes to run with a reset before each (0: just act)", default=0)
    keep_failures: bool = field("save failed episodes too (default: discard)", default=False)
    intervene_probability: float = field("scripted intervener: chance per step to take over (0: always drive)",
                                         default=0.0)
    intervene_steps: int = field("scripted intervener: steps per takeover", default=20)
    intervene_budget: int = field("scripted intervener: total steps", default=10**9)
    seed: int = field("random seed: the expert's approach offsets and the scripted intervener", default=0)
    lockstep: bool = field("sim time: the twin waits for the expert at every half period (sim/step_until)",
                           default=False)


class ExpertNode(Node):
    def __init__(self) -> None:
        super().__init__("expert")
        options = read_options(self, ExpertOptions)
        robot, task = options.robot, options.task
        self.episodes, self.keep_failures = options.episodes, options.keep_failures
        self.p_intervene = options.intervene_probability
        self.intervene_steps, self.intervene_budget = options.intervene_steps, options.intervene_budget
        self.rng = np.random.default_rng(options.seed)
        self.intervening, self.intervened = 0, 0
        self.profile = load_profile(robot)
        self.contract = c = Contract(self.profile)
        self.expert = make_expert(self.profile, task, seed=options.seed)
        self.kind = self.expert.config.kind
        self.names = self.profile.all_joint_names
        self.joints: tuple[np.ndarray, np.ndarray] | None = None
        self.ee: np.ndarray | None = None
        self.object_state: np.ndarray | None = None
        c.subscription(self, c.joint_states, self._on_joints)
        c.subscription(self, c.ee_pose, self._on_ee)
        c.subscription(self, c.object_poses, self._on_objects)
        self.arm_pub = c.publisher(self, c.joint_commands)
        self.intervention_pub = c.publisher(self, c.intervention)
        self.gripper_pub = c.publisher(self, c.gripper_commands) if c.gripper_commands else None
        self.reset_client = c.client(self, c.reset_service)
        self.success_client = c.client(self, c.task_success_service)
        self.episode_clients = {name: c.client(self, srv) for name, srv in c.episode_services.items()}
        self.recording = False
        self.start_tries = self.recorder_wait = 0
        self.completed, self.successes = 0, 0
        self.pending = None  # reset, episode/start or episode/save|discard in flight
        self.check = None  # task_success in flight (acting goes on meanwhile)
        self.state = "reset" if self.episodes > 0 else "act"
        self.steps = 0
        self.max_steps = int(self.expert.config.episode_seconds * self.profile.control.policy_rate_hz)
        self.act_phase = False
        self.half_period = 0.5 / self.profile.control.policy_rate_hz
        self.lockstep = options.lockstep
        if self.lockstep:
            from rosgraph_msgs.msg import Clock

            self.gate_pub = c.publisher(self, c.step_until)
            self.sim_now, self.next_tick = None, None
            self.state_subs = list(self.subscriptions)
            self.create_subscription(Clock, "/clock", self._on_clock, 10)
            self.create_timer(0.05, self._lockstep, clock=steady_clock())  # a fallback: answers call it (_call)
        else:
            self.create_timer(self.half_period, self._tick)

    # -- lock-step: the twin waits at every half period until the expert has acted ------------------
    def _on_clock(self, msg) -> None:
        from robot_stack.policies.observations import drain

        self.sim_now = convert.to_sec(msg.clock)
        drain(self.state_subs)  # every state message up to this time, before acting on it
        self._lockstep()

    def _lockstep(self) -> None:
        if self.sim_now is None:
            return
        if self.next_tick is None:
            self.next_tick = self.sim_now
        while self.next_tick <= self.sim_now + 1e-6 and not self._waiting():
            self._tick()
            self.next_tick += self.half_period
        for pub in (self.arm_pub, self.gripper_pub):
            if pub is not None:
                pub.wait_for_all_acked(ACK_TIMEOUT)  # the commands are at the twin before it may move on
        gate = self.sim_now if self._waiting() else self.next_tick
        from rosgraph_msgs.msg import Clock

        self.gate_pub.publish(Clock(clock=convert.to_stamp(gate)))

    def _waiting(self) -> bool:
        """A reset or an episode button in flight: the scene holds until it is answered."""
        return self.pending is not None and not self.pending.done()

    def _on_joints(self, msg) -> None:
        try:
            pos, vel, _ = convert.joint_state_arrays(msg, self.names)
        except convert.MessageError as err:
            self.get_logger().error(f"joint_states: {err}", throttle_duration_sec=2.0)
            return
        self.joints = (pos, vel)

    def _on_ee(self, msg) -> None:
        pos, quat = convert.pose_arrays(msg)
        self.ee = np.concatenate([pos, quat])

    def _on_objects(self, msg) -> None:
        try:
            self.object_state = object_state_from_poses(self.kind, pose_rows(msg))
        except ValueError as err:
            self.get_logger().error(f"object_poses: {err}", throttle_duration_sec=2.0)

    def _call(self, client) -> None:
        self.pending = client.call_async(client.srv_type.Request())
        if self.lockstep:  # the scene holds for the answer: act on it as soon as it arrives
            self.pending.add_done_callback(lambda _: self._lockstep())

    def _recorder(self, name: str):
        client = self.episode_clients[name]
        return client if client.service_is_ready() else None

    def _tick(self) -> None:
        """Half-period ticks, alternating: the episode's services, then one action.

        The recorder's tick grid starts when ``episode/start`` arrives, so starting episodes half a
        period away from the commands keeps every command clear of the grid: on the edge, timing
        jitter would file a command one step early or late at random (label noise in the demos).
        For the same reason the ``task_success`` poll never holds an action back.
        """
        self.act_phase = not self.act_phase
        if self.act_phase:
            self._act()
        else:
            self._manage()

    def _manage(self) -> None:
        if self.check is not None and self.check.done():
            self._checked(self.check.result())
        if self.pending is not None and not self.pending.done():
            return
        if self.state == "reset":
            if self.pending is None:
                if not self.reset_client.service_is_ready():
                    return
                return self._call(self.reset_client)
            self.get_logger().info(f"episode {self.completed + 1}: {self.pending.result().message}")
            self.pending, self.check, self.steps = None, None, 0
            self.joints = self.ee = self.object_state = None  # wait for post-reset state
            self.expert.reset()
            self.state = "start"
            return
        if self.state == "start":
            if self.pending is not None:  # episode/start answered
                result, self.pending = self.pending.result(), None
                self.recording = result.success
                self.start_tries += 1
                if not result.success and self.start_tries < START_TRIES:  # e.g. no camera frame yet: ask again
                    return
                if not result.success:
                    self.get_logger().warning(f"episode/start refused: {result.message} (acting unrecorded)")
                self.start_tries = 0
                self.state = "act"
            elif (client := self._recorder("start")) is not None and self._state_ready():
                return self._call(client)
            elif client is None:
                if self.completed == 0 and self.recorder_wait < START_TRIES:  # a recorder may still be starting
                    self.recorder_wait += 1
                    return
                self.state = "act"
            return
        if self.state == "finish":
            if self.pending is not None:
                self.get_logger().info(f"recorder: {self.pending.result().message}")
                self.pending = None
            self.recording = False
            self._next_episode()

    def _checked(self, result) -> None:  # std_srvs/Trigger response of task_success
        self.check = None
        if self.state != "act" or not (result.success or self.steps >= self.max_steps):
            return
        self.completed += 1
        self.successes += int(result.success)
        self.get_logger().info(f"episode {self.completed}: {result.message} ({self.successes}/{self.completed} successful)")
        self.state = "finish"
        if self.recording:
            name = "save" if (result.success or self.keep_failures) else "discard"
            if (client := self._recorder(name)) is not None:
                self._call(client)

    def _act(self) -> None:
        if self.state != "act" or not self._state_ready():
            return
        if self.p_intervene > 0 and not self._intervening():
            return
        obs = observation_dict(self.joints[0], self.joints[1], (self.ee[:3], self.ee[3:]), self.object_state)
        action = self.expert.act({k: v.astype(float) for k, v in obs.items()})
        from std_msgs.msg import Float64MultiArray

        n_arm = len(self.profile.joints)
        self.arm_pub.publish(Float64MultiArray(data=[float(v) for v in action[:n_arm]]))
        if self.gripper_pub is not None:
            self.gripper_pub.publish(Float64MultiArray(data=[float(action[n_arm])]))
        self.steps += 1
        if self.episodes > 0 and self.steps % 5 == 0 and self.check is None and self.success_client.service_is_ready():
            self.check = self.success_client.call_async(self.success_client.srv_type.Request())

    def _intervening(self) -> bool:
        """Scripted intervener: decide whether to command this step; publishes teleop/intervention."""
        from std_msgs.msg import Bool

        if self.intervening == 0 and self.intervened < self.intervene_budget and self.rng.random() < self.p_intervene:
            self.intervening = self.intervene_steps
            self.expert.reset()
            self.get_logger().info(f"intervening for {self.intervene_steps} steps")
        active = self.intervening > 0
        self.intervention_pub.publish(Bool(data=active))
        if active:
            self.intervening -= 1
            self.intervened += 1
        return active

    def _state_ready(self) -> bool:
        return self.joints is not None and self.ee is not None and (not self.kind or self.object_state is not None)

    def _next_episode(self) -> None:
        if self.completed >= self.episodes:
            self.state = "done"
            self.get_logger().info(f"done: {self.successes}/{self.completed} episodes successful")
            self.context.try_shutdown()  # exit 0; the twin keeps holding its position
            return
        self.state = "reset"


def main() -> None:
    run_node(ExpertNode)


if __name__ == "__main__":
    main()
