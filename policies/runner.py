"""PolicyRunner: a trained policy on a robot, as one ROS-free class driven by an explicit clock.

It owns everything between observations and a command: the observation history aligned by capture
stamp (to the slowest stream), when to plan, inference (its latency measured or configured), dropping
the steps already past, cross-fading into the running chunk, yielding to the operator and re-planning
from a fresh history when control comes back. ``policy_server`` wraps it for ROS (wall time on
hardware, the twin's ``/clock`` in simulation); the in-process evaluation drives the same class on
sim time. Both call, whenever new data may be there::

    runner.observe(key, stamp, value, received)
    chunk = runner.step(now)          # None, or the actions to send: a JointTrajectory

Inference latency is simulated honestly: a chunk becomes available at ``max(clock(), now + latency)``,
``latency`` being ``RuntimeConfig.inference_latency`` (a budget, 50 ms by default; or the measured
inference time). On wall time ``clock()`` has moved on by the time inference ends, so hardware never
acts earlier than the budget nor earlier than reality; on sim time the clock stands still and the
latency is added, so a policy validated in simulation meets on hardware the delay it was validated
with. The arm keeps executing the running chunk until the new one's stamp (joint_trajectory_controller
replacement semantics).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_stack.errors import UserError
from robot_stack.policies.chunks import ActionChunks
from robot_stack.policies.observations import ObservationHistory
from robot_stack.typed_config import field

VERSION = "1"
"""Runner behaviour version, recorded in sim sign-offs (bump when planning, blending or timing changes)."""


@dataclass(frozen=True)
class RuntimeConfig:
    """How a policy is run on a robot; the sim sign-off records it and deploying checks it."""

    replan_steps: int = field("re-plan every N action steps (0 = the policy's Ta)", default=0)
    blend_steps: int = field("steps over which a new chunk cross-fades into the running one", default=3)
    execution_latency: float = field("measured actuation latency (s) to compensate", default=0.0)
    inference_latency: float = field(
        "seconds from an observation until its chunk takes effect: exact on sim time, at least this on hardware "
        "(the actual inference time when longer); < 0: the measured inference time", default=0.05)
    silent_after: float = field("seconds without data after which a stream counts as silent", default=0.5)
    seed: int = field("seed of the sampling noise, restarted with every episode", default=0)

    def __post_init__(self) -> None:
        if self.replan_steps < 0 or self.blend_steps < 0:
            raise ValueError("replan_steps and blend_steps must be >= 0")
        if self.execution_latency < 0 or not self.silent_after > 0:
            raise ValueError("execution_latency must be >= 0 and silent_after > 0")


@dataclass
class Chunk:
    """Actions to execute: ``actions[k]`` (all joints) at absolute time ``times[k]``, available from ``stamp``."""

    stamp: float
    times: np.ndarray
    actions: np.ndarray
    observed_at: float


class PolicyRunner:
    def __init__(self, policy, profile, config: RuntimeConfig = RuntimeConfig(), *,
                 clock: Callable[[], float] | None = None, log: Callable[[str, str], None] | None = None,
                 inference_steps: int | None = None, plan_log: str | None = None):
        """``policy``: a loaded policy (``cfg``, ``predict_action``); ``clock()``: the time now on the driving clock."""
        import torch

        self.policy, self.profile, self.config = policy, profile, config
        cfg = policy.cfg
        self.n_obs, self.n_act = cfg.horizon.n_obs_steps, cfg.horizon.n_action_steps
        self.dt = 1.0 / profile.control.policy_rate_hz
        self.history = ObservationHistory(list(cfg.obs.keys))
        self.chunks = ActionChunks(config.blend_steps)
        self.clock = clock
        self.log = log or (lambda level, text: None)
        self.inference_steps = inference_steps
        self.generator = torch.Generator().manual_seed(config.seed)
        self.intervening = False
        self.next_plan = -np.inf
        self.latencies: deque[float] = deque(maxlen=200)
        self.published = 0
        self.episode, self.episode_start = 0, 0.0
        self.plan_log = plan_log
        if plan_log:
            from pathlib import Path

            Path(plan_log).parent.mkdir(parents=True, exist_ok=True)
            Path(plan_log).write_text("")
        """A JSON-lines file that gets every plan: episode, observation time since the episode start, the
        newest low-dim observations, the chunk's stamp and actions (to compare runs, e.g. twin and hardware)."""

    @property
    def keys(self) -> list[str]:
        return self.history.keys

    def observe(self, key: str, stamp: float, value, received: float) -> None:
        self.history.add(key, stamp, value, received)

    def restart(self, now: float) -> None:
        """A fresh episode from ``now``: empty history, no chunk, the noise sequence from its start."""
        self.history.restart(now)
        self.episode += 1
        self.episode_start = now
        self.chunks.reset()
        self.next_plan = -np.inf
        self.generator.manual_seed(self.config.seed)

    def set_intervention(self, on: bool, now: float) -> None:
        if on and not self.intervening:
            self.log("info", "operator took control: policy paused")
            self.chunks.reset()
        elif not on and self.intervening:
            self.log("info", "control returned: re-planning from the current state")
            self.restart(now)
        self.intervening = on

    def wake_time(self, now: float, control_period: float) -> float:
        """The next time ``step`` may act (a lock-step simulator may run until then without it)."""
        if self.intervening:
            return now
        if self.next_plan > now:
            return self.next_plan
        return now + 0.5 * control_period  # waiting for data: one control tick at a time

    def step(self, now: float) -> Chunk | None:
        """Plan if due and every stream has data; the chunk to send, or None."""
        if self.intervening or now + 1e-6 < self.next_plan:
            return None
        silent = self.history.silent(now, self.config.silent_after)
        if silent:
            self.log("warning", f"no data on {', '.join(silent)}: not publishing actions")
            self.chunks.reset()
            return None
        t_obs = self.history.newest_common_stamp()
        if t_obs is None:
            return None
        times = [t_obs - (self.n_obs - 1 - i) * self.dt for i in range(self.n_obs)]
        obs = self.history.sample(times, tolerance=max(self.dt, self.config.silent_after))
        if obs is None:
            self.log("warning", "observation streams are not aligned (gap larger than the tolerance)")
            return None
        start = time.perf_counter()
        try:
            actions = self.policy.predict_action({k: v[None] for k, v in obs.items()}, self.generator,
                                                 num_steps=self.inference_steps)
        except UserError as err:  # non-finite observations or actions
            self.log("error", str(err))
            return None
        measured = time.perf_counter() - start
        self.latencies.append(measured)
        latency = measured if self.config.inference_latency < 0 else self.config.inference_latency
        available = max(self.clock() if self.clock else now, now + latency)
        actions = actions[0].cpu().numpy()[self.n_obs - 1:]
        step_times = t_obs + self.dt * np.arange(len(actions))
        step_times, actions = self.chunks.add(step_times, actions, available + self.config.execution_latency)
        if not len(actions):
            return None  # all late: keep the running chunk, try again at the next call
        self.next_plan = t_obs + (self.config.replan_steps or self.n_act) * self.dt - self.dt / 2
        self.published += 1
        chunk = Chunk(available, step_times, actions, t_obs)
        if self.plan_log:
            self._log_plan(chunk, obs)
        return chunk

    def _log_plan(self, chunk: Chunk, obs: dict[str, np.ndarray]) -> None:
        import json

        entry = {"episode": self.episode, "t": round(chunk.observed_at - self.episode_start, 6),
                 "stamp": round(chunk.stamp - self.episode_start, 6),
                 "obs": {k: np.asarray(v[-1], float).round(6).tolist() for k, v in obs.items() if v[-1].ndim == 1},
                 "actions": chunk.actions.round(6).tolist()}
        with open(self.plan_log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def report(self) -> str:
        if not self.latencies:
            return "no chunks yet"
        lat = np.array(self.latencies) * 1e3
        return (f"chunks published {self.published}, inference median {np.median(lat):.1f} ms "
                f"p99 {np.percentile(lat, 99):.1f} ms, steps dropped as late {self.chunks.dropped}")


def chunk_message(names: list[str], chunk: Chunk):  # trajectory_msgs/JointTrajectory
    """The chunk as the ``JointTrajectory`` sent to the arm (stamped with the instant it is available)."""
    from robot_stack import convert

    return convert.make_trajectory(names, chunk.times - chunk.stamp, chunk.actions, convert.to_stamp(chunk.stamp))


def runtime_record(runner_config: RuntimeConfig, policy, profile) -> dict:
    """What a sim sign-off must match at deploy: the runtime configuration that produced it."""
    from robot_stack.arm.core import VERSION as CORE_VERSION
    from robot_stack.typed_config import to_dict

    cfg = policy.cfg
    return {
        "runtime": to_dict(runner_config), "control_rate_hz": profile.control.rate_hz,
        "policy_rate_hz": profile.control.policy_rate_hz, "action_space": cfg.obs.action_space,
        "observations": list(cfg.obs.keys), "inference_steps": int(policy.inference_steps),
        "versions": {"arm_core": CORE_VERSION, "policy_runner": VERSION},
    }
