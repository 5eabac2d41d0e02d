"""policy_server: a trained policy on the contract's topics (twin or hardware alike).

The ROS transport of ``PolicyRunner`` (runner.py), which holds every decision: observations are fed
from the contract's topics (aligned by capture stamp), each chunk is published as a timestamped
``JointTrajectory`` on ``<controller>/joint_trajectory`` (arm joints then gripper, stamped with the
instant it is available), the policy yields while ``teleop/intervention`` is true and re-plans from a
fresh history when control comes back. With ``require_sim_validation`` it refuses a checkpoint
without a passing ``robot-stack eval`` sign-off made with this runtime configuration.

Lock-step (``lockstep:=true``, simulation only, with ``use_sim_time``): the server acts on every
``/clock`` message of the twin and publishes on ``sim/step_until`` the sim time up to which the twin
may run without it, so sim time stands still while the policy thinks (and the configured or measured
inference latency is added to sim time instead): an evaluation over ROS runs faster than real time
and gives the in-process result.
"""

from __future__ import annotations

from dataclasses import dataclass

from rclpy.duration import Duration
from rclpy.node import Node
from std_msgs.msg import Bool

from robot_stack import convert
from robot_stack.contract import Contract, check_deployable
from robot_stack.errors import UserError
from robot_stack.node import run_node
from robot_stack.node_log import node_log
from robot_stack.node_options import read_options
from robot_stack.policies import observations
from robot_stack.policies.runner import PolicyRunner, RuntimeConfig, chunk_message
from robot_stack.policies.validation import check_validated
from robot_stack.profile import load_profile
from robot_stack.typed_config import field

ACK_TIMEOUT = Duration(seconds=2.0)


@dataclass(frozen=True)
class ServerOptions:
    robot: str = field("robot profile name or YAML path", default="so101")
    policy: str = field("policy checkpoint folder (from robot-stack train)", default="")
    task: str = field("task (interprets object_poses; the sim validation must be for it)", default="")
    device: str = field("torch device for inference (auto: a GPU when torch sees one, else cpu; cpu, cuda, cuda:1)",
                        default="auto")
    inference_steps: int = field("denoising steps (0 = the checkpoint's default)", default=0)
    require_sim_validation: bool = field("refuse checkpoints without a matching passing sim eval", default=False)
    lockstep: bool = field("simulation: hold the twin's clock while the policy thinks (sim/step_until)", default=False)
    plan_log: str = field("JSON-lines file that gets every plan (observations, actions); '' for none", default="")
    privileged: bool = field("allow a policy that observes the simulator's ground truth (object_state)", default=False)


class PolicyServer(Node):
    def __init__(self, **kwargs):
        super().__init__("policy_server", **kwargs)
        options = read_options(self, ServerOptions)
        runtime = read_options(self, RuntimeConfig)
        if not options.policy:
            raise UserError("policy_server needs the 'policy' parameter: a checkpoint folder")
        self.profile = load_profile(options.robot)
        import torch

        from robot_stack.policies.diffusion.checkpoint import load_policy
        from robot_stack.policies.runner import runtime_record

        torch.set_num_threads(max(1, torch.get_num_threads()))
        policy = load_policy(options.policy, self.profile, device=options.device)
        check_deployable(policy.cfg.obs.keys, self.profile, options.privileged, f"policy {options.policy}")
        if options.inference_steps:
            policy.inference_steps = options.inference_steps
        if options.require_sim_validation:
            check_validated(options.policy, options.task or None, runtime_record(runtime, policy, self.profile))
        self.runner = PolicyRunner(policy, self.profile, runtime, clock=self.now, log=node_log(self, 2.0),
                                   plan_log=options.plan_log or None)
        self.contract = c = Contract(self.profile)
        kind = None
        if options.task:
            from robot_stack.tasks import load_task_config

            kind = load_task_config(options.task).kind
        self.observation_subs = observations.subscribe(self, c, self.runner.history, task_kind=kind, now=self.now)
        self.trajectory_pub = c.publisher(self, c.joint_trajectory)
        c.subscription(self, c.intervention, self._on_intervention)
        self.lockstep = options.lockstep
        if self.lockstep:
            from rosgraph_msgs.msg import Clock

            if not self.get_parameter("use_sim_time").value:
                raise UserError("lockstep:=true needs use_sim_time:=true (a simulator publishing /clock)")
            self.gate_pub = c.publisher(self, c.step_until)
            self.sim_now = 0.0
            self.create_subscription(Clock, "/clock", self._on_clock, 10)
        else:
            self.create_timer(self.runner.dt / 2, lambda: self.tick(self.now()))
        log = self.get_logger()
        self.create_timer(5.0, lambda: self.runner.latencies and log.info(self.runner.report()))
        cfg = policy.cfg
        log.info(f"policy {options.policy} ready: obs {', '.join(cfg.obs.keys)}; To={self.runner.n_obs} "
                 f"Ta={self.runner.n_act} at {1 / self.runner.dt:g} Hz" + (" (lock-step)" if self.lockstep else ""))

    def now(self) -> float:
        if self.lockstep:  # the time the twin announced last, with every sensor message up to it delivered
            return self.sim_now
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_clock(self, msg) -> None:  # lock-step: the twin waits at this time
        self.sim_now = max(self.sim_now, convert.to_sec(msg.clock))
        observations.drain(self.observation_subs)
        self.tick(self.sim_now)

    def _on_intervention(self, msg: Bool) -> None:
        now = self.now()
        self.runner.set_intervention(bool(msg.data), now)
        self._release(now)

    def tick(self, now: float) -> None:
        chunk = self.runner.step(now)
        if chunk is not None:
            self.trajectory_pub.publish(chunk_message(self.profile.all_joint_names, chunk))
            if self.lockstep:  # delivered before the twin may move on
                self.trajectory_pub.wait_for_all_acked(ACK_TIMEOUT)
        self._release(now)

    def _release(self, now: float) -> None:
        """Lock-step: let the twin run until the runner next needs to act."""
        if not self.lockstep:
            return
        from rosgraph_msgs.msg import Clock

        gate = self.runner.wake_time(now, self.profile.control_period)
        self.gate_pub.publish(Clock(clock=convert.to_stamp(gate)))  # repeated while the twin waits: still here


def main() -> None:
    run_node(PolicyServer)
