"""hil_actor: runs the current RL policy on the robot contract (twin or hardware alike) and feeds the learner.

Every policy period (``profile.control.policy_rate_hz``) it samples the contract's observations
(``joint_states``, ``ee_pose``, ``object_poses``, cameras), closes the previous step into a
transition and starts the next one: the policy's normalised action becomes an absolute joint target
(``RLSpace.to_target``) published as a one-point ``JointTrajectory`` reached one period later, as
``policy_server`` publishes its chunks. While ``teleop/intervention`` is true the policy yields:
the human's commands drive the arm, and the step is stored with the commanded joint targets seen
on ``<controller>/commands`` and the gripper's ``commands`` (joints a device commands only in
Cartesian space take the position they reached) converted by ``RLSpace.from_target`` into the
policy's action space, flagged as an intervention.

Episodes (``episodes``): ``twin`` resets the twin (``reset``) before each and asks ``task_success``
after every step (reward 1 and terminal on success; truncated at the task's time limit);
``operator`` (hardware) serves the recorder's ``episode/start`` (the scene is ready: go),
``episode/save`` (end now as a success) and ``episode/discard`` (end now as a failure) services for
the teleop episode buttons, and the reward is the reward classifier's verdict on every state.

Transitions go to the learner on ``hil/transitions`` through a bounded outbox that resends what the
learner has not acknowledged, so nothing is lost while the learner restarts; weights arrive on the
latched ``hil/weights`` (a restarted actor gets the latest at once). See ``transport`` and
``delivery``.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.errors import UserError
from robot_stack.node import run_node
from robot_stack.node_options import read_options
from robot_stack.typed_config import field
from robot_stack.policies.hil import transport
from robot_stack.policies.hil.delivery import Outbox
from robot_stack.policies.hil.transport import ActorStats, LearnerStatus, Transition, Weights


@dataclass
class PendingStep:
    """A step whose next state is not observed yet."""

    obs: np.ndarray
    joint_pos: np.ndarray
    previous: np.ndarray | None
    """The command before this step (discrete gripper ``stay``)."""
    action: np.ndarray | None
    """The policy's action (None: the human's, known at the step's end)."""
    target: np.ndarray | None


@dataclass(frozen=True)
class RunOptions:
    config: str = field("HIL run config: a config/hil name or a YAML path", default="pick_cube_state")
    robot: str = field("robot (default: the run config's)", default="")
    task: str = field("task (default: the run config's)", default="")


@dataclass(frozen=True)
class ActorOptions:
    episodes: str = field("twin: reset/task_success of the twin; operator: the teleop episode buttons "
                          "(episode/start, save = success, discard = failure)", default="twin")
    reward: str = field("twin (task_success) or classifier (default: classifier when one is given or the run "
                        "config's reward is classifier, else twin)", default="")
    classifier: str = field("reward classifier checkpoint (default: the run config's)", default="")
    actor_id: str = field("name of this actor in the learner's table (default: host name)", default="")
    outbox_capacity: int = field("transitions kept until the learner acknowledges them", default=100000)
    deterministic: bool = field("act with the policy's mean (no exploration)", default=False)
    wait_for_weights: bool = field("act only once the learner's weights arrived", default=True)
    max_episodes: int = field("exit after this many episodes, once the learner has them all (0: run until stopped)",
                              default=0)
    silent_after: float = field("seconds without data after which a topic counts as silent", default=0.5)
    episode_seconds: float = field("episode time limit (0: the task's)", default=0.0)
    learner_run: str = field("run token of the learner to take weights from (empty: the first one heard)", default="")

    def __post_init__(self) -> None:
        if self.episodes not in ("twin", "operator"):
            raise ValueError(f"episodes must be twin or operator, not {self.episodes!r}")
        if self.reward not in ("", "twin", "classifier"):
            raise ValueError(f"reward must be twin or classifier, not {self.reward!r}")


def load_run_config(node: Node):  # (HILConfig, RLSpace, task config)
    """The HIL config, robot and task from a node's ``config``/``robot``/``task`` parameters."""
    from robot_stack.policies.hil.config import load_hil_config
    from robot_stack.policies.hil.spaces import RLSpace
    from robot_stack.tasks import load_task_config

    run = read_options(node, RunOptions)
    overrides = {k: v for k in ("robot", "task") if (v := getattr(run, k))}
    cfg = load_hil_config(run.config, **overrides)
    task = load_task_config(cfg.task)
    return cfg, RLSpace(cfg.robot, task.kind, cfg), task


def agent_fingerprint(layout: dict[str, tuple[int, ...]]) -> str:
    import hashlib

    text = ";".join(f"{k}={'x'.join(map(str, v))}" for k, v in sorted(layout.items()))
    return "sac-" + hashlib.sha256(text.encode()).hexdigest()[:16]


class HilActor(Node):
    def __init__(self, **kwargs):
        super().__init__("hil_actor", **kwargs)
        import torch

        from robot_stack.policies.hil.agent import SACAgent
        from robot_stack.policies.observations import ObservationHistory, subscribe

        self.cfg, self.space, task = load_run_config(self)
        options = read_options(self, ActorOptions)
        self.mode, reward, classifier = options.episodes, options.reward, options.classifier
        self.actor_id = options.actor_id or socket.gethostname().split(".")[0] or "actor"
        capacity, self.deterministic = options.outbox_capacity, options.deterministic
        self.wait_weights, self.max_episodes = options.wait_for_weights, options.max_episodes
        self.silence_s, seconds = options.silent_after, options.episode_seconds
        if self.mode == "operator" and not (reward or classifier or self.cfg.reward == "classifier"):
            raise UserError("episodes:=operator (hardware) needs a reward classifier: classifier:=<checkpoint> "
                            "(or reward:=twin where a twin serves task_success)")
        reward = reward or ("classifier" if classifier or self.cfg.reward == "classifier" else "twin")
        self.classifier = None
        if reward == "classifier":
            from robot_stack.policies.hil.classifier import RewardClassifier

            path = classifier or self.cfg.classifier
            if not path:
                raise UserError("reward:=classifier needs classifier:=<checkpoint folder> (robot-stack hil classifier)")
            self.classifier = RewardClassifier.load(path)
        torch.set_num_threads(max(1, self.cfg.torch_threads))
        sp = self.space
        self.profile, self.dt = sp.profile, 1.0 / sp.profile.control.policy_rate_hz
        self.max_steps = int(round((seconds or task.episode_seconds) / self.dt))
        self.agent = SACAgent(self.cfg.agent, sp.obs_dim, sp.act_dim, sp.state_dim, seed=self.cfg.seed)
        self.layout = {k: tuple(v.shape) for k, v in self.agent.actor_state().items()}
        self.fingerprint = agent_fingerprint(self.layout)
        self.rng = np.random.default_rng(self.cfg.seed)
        self.c = c = Contract(self.profile)
        self.streams = ObservationHistory(list(sp.obs_keys))
        subscribe(self, c, self.streams, task_kind=task.kind)
        self.trajectory_pub = c.publisher(self, c.joint_trajectory)
        c.subscription(self, c.intervention, self._on_intervention)
        c.subscription(self, c.joint_commands, self._on_arm_command)
        if c.gripper_commands is not None:
            c.subscription(self, c.gripper_commands, self._on_gripper_command)
        self.reset_client = c.client(self, c.reset_service)
        self.success_client = c.client(self, c.task_success_service)
        if self.mode == "operator":
            for name in ("start", "save", "discard"):
                c.service(self, c.episode_services[name], lambda req, res, n=name: self._on_episode_button(n, res))
        # learner link
        self.session = uuid.uuid4().hex[:12]
        self.outbox = Outbox(self.actor_id, self.session, capacity=capacity)
        self.send_batch = transport.publisher(self, "transitions")
        self.send_stats = transport.publisher(self, "actor_stats")
        self.rejected = transport.subscribe(self, "weights", self._on_weights, weights_layout=self.layout)
        self.learner = transport.RunPin(options.learner_run)
        transport.subscribe(self, "learner_status", self._on_status)
        self.weights_version, self.weights_updates, self.weights_latency_ms = 0, 0, float("nan")
        # episode state
        self.state = "weights" if self.wait_weights else "start"
        self.busy = False
        self.reset_at = 0.0
        self.pending: PendingStep | None = None
        self.previous_target: np.ndarray | None = None
        self.intervening = self.took_over = False
        self.commanded = np.full(sp.n_all, np.nan)
        self.end_request = ""
        self.episode, self.step_in_episode = 0, 0
        self.episodes = self.successes = self.steps = self.intervention_steps = 0
        self.step_times: deque[float] = deque(maxlen=50)
        self.create_timer(self.dt, self.tick)
        self.create_timer(0.05, self.flush)
        self.create_timer(1.0, self.report)
        self.get_logger().info(
            f"actor {self.actor_id} (session {self.session}) on {self.profile.name}/{task.name}: obs {sp.obs_dim}, "
            f"act {sp.act_dim}, {1 / self.dt:g} Hz, episodes by {self.mode}, reward from {reward}"
            + ("; waiting for the learner's weights" if self.wait_weights else ""))

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- inputs ---------------------------------------------------------------------------------
    def _on_intervention(self, msg) -> None:
        if msg.data and not self.intervening:
            self.commanded[:] = np.nan  # a new takeover: forget the previous one's commands
            self.took_over = True
            self.get_logger().info("operator took control: the policy yields")
        elif not msg.data and self.intervening:
            self.get_logger().info("control given back to the policy")
        self.intervening = bool(msg.data)

    def _on_arm_command(self, msg) -> None:
        try:
            self.commanded[: self.space.n_arm] = convert.command_array(msg.data, self.space.n_arm)
        except convert.MessageError as err:
            self.get_logger().warning(f"ignoring a joint command: {err}", throttle_duration_sec=2.0)

    def _on_gripper_command(self, msg) -> None:
        try:
            self.commanded[self.space.n_arm] = convert.command_array(msg.data, 1)[0]
        except convert.MessageError as err:
            self.get_logger().warning(f"ignoring a gripper command: {err}", throttle_duration_sec=2.0)

    def _on_weights(self, w: Weights) -> None:
        following = self.learner.run
        if not self.learner.accept(w.run):
            self.get_logger().warning(
                f"dropped weights v{w.version} from learner run {w.run}: this actor follows run {self.learner.run} "
                f"({self.learner.dropped} dropped)", throttle_duration_sec=5.0)
            return
        if not following:
            self.get_logger().info(f"following learner run {w.run}: weights from any other learner are dropped")
        if (w.version, w.updates) == (self.weights_version, self.weights_updates):
            return  # a repeat (latched) of what is loaded
        try:
            self.agent.load_actor_state(w.tensors)
        except UserError as err:
            self.get_logger().error(f"rejected weights v{w.version}: {err}")
            return
        first = self.weights_version == 0
        self.weights_version, self.weights_updates = w.version, w.updates
        self.weights_latency_ms = (time.time() - w.stamp) * 1e3
        if first:
            self.get_logger().info(f"weights v{w.version} ({w.updates} updates) loaded; "
                                   f"published {self.weights_latency_ms / 1e3:.3f} s ago")

    def _on_status(self, status: LearnerStatus) -> None:
        if self.session in status.acks:
            self.outbox.ack(status.acks[self.session], status.durable.get(self.session, -1))

    def _on_episode_button(self, name: str, response):
        if name == "start":
            response.success = self.state == "idle"
            if response.success:
                self.state, self.reset_at = "settle", self.now()
            response.message = f"episode {self.episode} started" if response.success else f"not idle ({self.state})"
        else:
            response.success = self.state == "run"
            if response.success:
                self.end_request = name
            response.message = (f"episode {self.episode} ends as a {'success' if name == 'save' else 'failure'}"
                                if response.success else "no episode running")
        return response

    # -- the loop -------------------------------------------------------------------------------
    def observe(self) -> tuple[float, dict[str, np.ndarray]] | None:
        silent = self.streams.silent(self.now(), self.silence_s)
        if silent:
            self.get_logger().warning(f"no data on {', '.join(silent)}: not acting", throttle_duration_sec=2.0)
            return None
        stamp = self.streams.newest_common_stamp()
        obs = self.streams.sample([stamp], tolerance=max(self.dt, self.silence_s))
        if obs is None:
            self.get_logger().warning("observation streams are not aligned", throttle_duration_sec=2.0)
            return None
        return stamp, {k: v[0] for k, v in obs.items()}

    def tick(self) -> None:
        if self.busy:
            return
        if self.state == "weights":
            if self.weights_version:
                self.state = "start"
            return
        if self.state == "start":
            self.state = "reset" if self.mode == "twin" else "idle"
            if self.mode == "operator":
                self.get_logger().info("ready: press the teleop episode start button when the scene is set")
        if self.state == "reset":
            if not self.reset_client.service_is_ready():
                self.get_logger().warning("waiting for the twin's reset service", throttle_duration_sec=5.0)
                return
            self._call(self.reset_client, self._on_reset)
        elif self.state in ("settle", "run"):
            seen = self.observe()
            if seen is None or seen[0] <= self.reset_at:
                return  # wait for the state after the reset
            if self.state == "settle":
                self.state, self.pending, self.step_in_episode, self.end_request = "run", None, 0, ""
                self.previous_target = None
            obs = seen[1]
            if self.classifier is not None:
                self.step(obs, self.classifier.predict(obs) >= self.cfg.classifier_threshold)
            else:
                self._call(self.success_client, lambda r: self.step(obs, r.success))
        elif self.state == "done" and not len(self.outbox):
            self.report()
            self.get_logger().info(f"done: {self.successes}/{self.episodes} episodes successful; the learner has "
                                   "every transition")
            self.context.try_shutdown()

    def _call(self, client, then) -> None:
        if not client.service_is_ready():
            self.get_logger().warning(f"service {client.srv_name} is not available", throttle_duration_sec=5.0)
            return
        self.busy = True
        future = client.call_async(client.srv_type.Request())

        def done(f) -> None:
            self.busy = False
            if f.result() is not None:
                then(f.result())

        future.add_done_callback(done)

    def _on_reset(self, result) -> None:
        self.reset_at = self.now()
        self.state = "settle"
        self.get_logger().info(f"episode {self.episode}: {result.message}")

    def step(self, obs: dict[str, np.ndarray], success: bool) -> None:
        """Close the pending step with ``obs`` (the state it reached) and start the next one."""
        if self.state != "run":
            return
        sp = self.space
        vec = sp.observation(obs)
        joint_pos = np.asarray(obs["joint_pos"], dtype=np.float64)
        p = self.pending
        if p is not None:
            human = p.action is None or self.took_over
            if human:  # the human's command in the policy's action space
                target = np.where(np.isnan(self.commanded), joint_pos, self.commanded)
                action = sp.from_target(target, p.joint_pos, p.previous)
                self.previous_target = target
            else:
                action = p.action
            penalty = self.cfg.agent.gripper_toggle_penalty if sp.gripper_toggles(action, p.joint_pos, p.previous) else 0.0
            verdict = self.end_request
            success = bool(success) or verdict == "save"
            done = success and (self.cfg.terminate_on_success or verdict == "save")
            truncated = not done and (self.step_in_episode + 1 >= self.max_steps or verdict == "discard")
            self.outbox.add(Transition(p.obs, action, float(success), vec, done, truncated, human, self.episode,
                                       self.step_in_episode, penalty))
            self.step_in_episode += 1
            self.steps += 1
            self.intervention_steps += int(human)
            self.step_times.append(time.monotonic())
            if done or truncated:
                return self._end_episode(success)
        self.took_over = False
        if self.intervening:
            self.pending = PendingStep(vec, joint_pos, self.previous_target, None, None)
            return
        if self.cfg.random_warmup and self.weights_updates == 0:
            action = self.rng.uniform(-1, 1, sp.act_dim).astype(np.float32)
        else:
            action = self.agent.act(vec, deterministic=self.deterministic)
        target = sp.to_target(action, joint_pos, self.previous_target)
        stamp = self.now()
        self.trajectory_pub.publish(convert.make_trajectory(self.profile.all_joint_names, [self.dt], target[None],
                                                            convert.to_stamp(stamp)))
        self.pending = PendingStep(vec, joint_pos, self.previous_target, action, target)
        self.previous_target = target

    def _end_episode(self, success: bool) -> None:
        self.episodes += 1
        self.successes += int(success)
        self.get_logger().info(f"episode {self.episode}: {'success' if success else 'failure'} after "
                               f"{self.step_in_episode} steps ({self.successes}/{self.episodes} successful)")
        self.episode += 1
        self.pending = None
        if self.max_episodes and self.episodes >= self.max_episodes:
            self.state = "done"
        else:
            self.state = "reset" if self.mode == "twin" else "idle"

    # -- learner link ---------------------------------------------------------------------------
    def flush(self) -> None:
        for batch in self.outbox.batches():
            self.send_batch(batch)

    def report(self) -> None:
        t = self.step_times
        rate = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
        self.send_stats(ActorStats(self.actor_id, self.session, self.episodes, self.successes, self.steps,
                                   self.intervention_steps, len(self.outbox), self.outbox.dropped,
                                   self.weights_version, float(rate)))

    def close(self) -> None:
        if len(self.outbox):
            self.get_logger().warning(f"stopping with {len(self.outbox)} transitions not yet in a learner checkpoint")


def main() -> None:
    run_node(HilActor)


if __name__ == "__main__":
    main()
