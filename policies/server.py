"""policy_server: runs a trained policy on the contract's topics (twin or hardware alike).

Every re-planning period it aligns the observation history by capture time (to the slowest
stream), runs inference, drops the steps already in the past, blends the new chunk into the one
running and publishes it as a timestamped ``JointTrajectory`` on ``<controller>/joint_trajectory``
(arm joints then gripper). It yields while the operator holds ``teleop/intervention`` and
re-plans from the current state when control comes back, with a fresh observation history (as at
an episode start: nothing from before the takeover or a reset). Silent topics and non-finite actions are
reported and nothing is published. With ``require_sim_validation`` it refuses a checkpoint that
has no passing ``robot-stack eval`` record.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Bool

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.errors import UserError
from robot_stack.node import declare, run_node
from robot_stack.policies.chunks import ActionChunks
from robot_stack.policies.observations import ObservationStreams
from robot_stack.policies.validation import check_validated
from robot_stack.profile import load_profile


class PolicyServer(Node):
    def __init__(self, **kwargs):
        super().__init__("policy_server", **kwargs)
        self.profile = load_profile(declare(self, "robot", "so101", "robot profile name or YAML path"))
        checkpoint = declare(self, "policy", "", "policy checkpoint folder (from robot-stack train)")
        device = declare(self, "device", "cpu", "torch device for inference (cpu, cuda, cuda:1)")
        steps = declare(self, "inference_steps", 0, "DDIM steps (0 = the checkpoint's default)")
        self.replan_steps = declare(self, "replan_steps", 0, "re-plan every N action steps (0 = the policy's Ta)")
        self.blend_steps = declare(self, "blend_steps", 3, "steps over which a new chunk cross-fades into the old")
        self.silence_s = declare(self, "silent_after", 0.5, "seconds without data after which a topic counts as silent")
        self.latency_s = declare(self, "execution_latency", 0.0, "measured actuation latency (s) to compensate")
        require = declare(self, "require_sim_validation", False, "refuse checkpoints without a passing sim eval")
        task = declare(self, "task", "", "task (interprets object_poses; the sim validation must be for it)")
        if not checkpoint:
            raise UserError("policy_server needs the 'policy' parameter: a checkpoint folder")
        if require:
            check_validated(checkpoint, task or None)

        import torch

        from robot_stack.policies.diffusion.checkpoint import load_policy

        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.policy = load_policy(checkpoint, self.profile, device=device)
        self.num_steps = steps or None
        cfg = self.policy.cfg
        self.n_obs, self.n_act = cfg.horizon.n_obs_steps, cfg.horizon.n_action_steps
        self.dt = 1.0 / self.profile.control.policy_rate_hz
        self.contract = Contract(self.profile)
        kind = None
        if task:
            from robot_stack.sim.tasks import load_task_config

            kind = load_task_config(task).kind
        self.streams = ObservationStreams(self, self.contract, list(cfg.obs.keys), task_kind=kind)
        self.chunks = ActionChunks(self.blend_steps)
        self.trajectory_pub = self.contract.publisher(self, self.contract.joint_trajectory)
        self.contract.subscription(self, self.contract.intervention, self._on_intervention)
        self.intervening = False
        self.next_plan = 0.0
        self.latencies: deque[float] = deque(maxlen=200)
        self.published = 0
        self.create_timer(self.dt / 2, self.tick)
        self.create_timer(5.0, self.report)
        self.get_logger().info(f"policy {checkpoint} ready: obs {', '.join(cfg.obs.keys)}; "
                               f"To={self.n_obs} Ta={self.n_act} at {1 / self.dt:g} Hz")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_intervention(self, msg: Bool) -> None:
        if msg.data and not self.intervening:
            self.get_logger().info("operator took control: policy paused")
            self.chunks.reset()
        elif not msg.data and self.intervening:
            self.get_logger().info("control returned: re-planning from the current state")
            self.chunks.reset()
            self.streams.restart(self.now())
            self.next_plan = 0.0
        self.intervening = msg.data

    def tick(self) -> None:
        now = self.now()
        if self.intervening or now < self.next_plan:
            return
        silent = self.streams.silent(now, self.silence_s)
        if silent:
            self.get_logger().warning(f"no data on {', '.join(silent)}: not publishing actions",
                                      throttle_duration_sec=2.0)
            self.chunks.reset()
            return
        t_obs = self.streams.newest_common_stamp()
        if t_obs is None:  # just restarted: wait for a sample on every stream
            return
        times = [t_obs - (self.n_obs - 1 - i) * self.dt for i in range(self.n_obs)]
        obs = self.streams.sample(times, tolerance=max(self.dt, self.silence_s))
        if obs is None:
            self.get_logger().warning("observation streams are not aligned (gap larger than the tolerance)",
                                      throttle_duration_sec=2.0)
            return
        start = time.perf_counter()
        try:
            actions = self.policy.predict_action({k: v[None] for k, v in obs.items()}, num_steps=self.num_steps)
        except UserError as err:  # non-finite observations or actions
            self.get_logger().error(f"{err}", throttle_duration_sec=1.0)
            return
        self.latencies.append(time.perf_counter() - start)
        actions = actions[0].cpu().numpy()[self.n_obs - 1:]
        step_times = t_obs + self.dt * np.arange(len(actions))
        stamp = self.now()
        step_times, actions = self.chunks.add(step_times, actions, stamp + self.latency_s)
        if not len(actions):
            return
        msg = convert.make_trajectory(self.profile.all_joint_names, step_times - stamp, actions, convert.to_stamp(stamp))
        self.trajectory_pub.publish(msg)
        self.published += 1
        self.next_plan = t_obs + (self.replan_steps or self.n_act) * self.dt - self.dt / 2

    def report(self) -> None:
        if not self.latencies:
            return
        lat = np.array(self.latencies) * 1e3
        self.get_logger().info(f"chunks published {self.published}, inference median {np.median(lat):.1f} ms "
                               f"p99 {np.percentile(lat, 99):.1f} ms, steps dropped as late {self.chunks.dropped}")


def main() -> None:
    run_node(PolicyServer)
