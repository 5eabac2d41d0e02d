"""In-process HIL-SERL training on the twin (``TwinEnv``, no ROS): what the actor and learner nodes do,
in one process and without waiting on real time.

1. Demos: the scripted expert (``make_expert``) runs ``demos`` successful episodes; its absolute
   joint targets are converted with ``RLSpace.from_target`` and executed as ``to_target`` of that,
   so the demo buffer holds exactly what was executed, in the policy's action space.
2. Online: the policy acts; a scripted intervener (the expert standing in for a human at the teleop
   device) takes over with ``probability`` per step once the task's progress has stalled for
   ``patience`` steps, for up to ``steps`` steps, until ``budget_fraction`` of the run. Intervened
   steps are stored, flagged, in both the online and the demo buffer.
3. Reward: sparse task success (terminal) or a trained reward classifier's verdict.
4. Learning: after ``warmup_steps``, ``utd_ratio`` RLPD updates per env step on batches drawn
   ``demo_ratio`` from the demo buffer and the rest from the online buffer, on ``cfg.device`` (the
   agent acts on that device too; actions come back as numpy).

Each episode is logged to ``metrics.jsonl`` (success, return, length, intervention steps and rate);
``curves.png`` plots the success and intervention rates over env steps; the agent and both buffers
are saved at the end (and the agent every ``checkpoint_every`` steps).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from robot_stack.policies.hil.agent import SACAgent, resolve_device
from robot_stack.policies.hil.buffer import ReplayBuffer, mixed_batch
from robot_stack.policies.hil.config import HILConfig
from robot_stack.policies.hil.spaces import RLSpace
from robot_stack.typed_config import to_dict


@dataclass
class EpisodeLog:
    episode: int
    env_steps: int
    success: bool
    ret: float
    length: int
    intervention_steps: int
    intervention_rate: float
    updates: int
    wall_s: float
    kind: str = "train"
    """``train`` (the online episodes), ``demo`` or ``eval`` (deterministic policy)."""
    losses: dict[str, float] = field(default_factory=dict)


@dataclass
class RunResult:
    episodes: list[EpisodeLog]
    eval_success: float | None
    """Success rate of the final deterministic evaluation (None: no evaluation)."""
    env_steps: int
    wall_s: float
    demo_success: float
    """Share of the scripted demo episodes that succeeded."""
    demo_transitions: int
    out_dir: Path | None = None

    def train_episodes(self) -> list[EpisodeLog]:
        return [e for e in self.episodes if e.kind == "train"]

    def intervention_rate(self, start: float, stop: float) -> float:
        """Share of intervened steps among the train steps in ``[start, stop)`` of the run (fractions)."""
        lo, hi = start * self.env_steps, stop * self.env_steps
        eps = [e for e in self.train_episodes() if lo <= e.env_steps - e.length / 2 < hi]
        steps = sum(e.length for e in eps)
        return sum(e.intervention_steps for e in eps) / steps if steps else float("nan")

    def success_rate(self, last: int = 20) -> float:
        eps = self.train_episodes()[-last:]
        return float(np.mean([e.success for e in eps])) if eps else float("nan")


@dataclass
class StepRecord:
    """One executed step, as ``Trainer(on_step=...)`` reports it."""

    obs: dict[str, np.ndarray]
    """Observation the action was chosen on."""
    previous_target: np.ndarray
    """The command before this step."""
    action: np.ndarray
    """Normalised action (what the buffers store)."""
    target: np.ndarray
    """Absolute joint target executed: ``to_target(action)``."""
    teleop_target: np.ndarray | None
    """The intervener's (or demo expert's) own absolute command, when it drove this step."""
    intervention: bool
    kind: str


class Trainer:
    """One training run on the twin; ``run()`` executes it."""

    def __init__(self, cfg: HILConfig, out_dir: str | Path | None = None, progress: bool = True,
                 on_episode: Callable[[EpisodeLog], None] | None = None,
                 on_step: Callable[[StepRecord], None] | None = None):
        from robot_stack.sim.experts import make_expert
        from robot_stack.sim.gym_env import TwinEnv

        self.cfg = cfg
        self.device = resolve_device(cfg.device)  # first: a GPU that is not there fails before the twin starts
        torch.set_num_threads(max(1, cfg.torch_threads))
        self.rng = np.random.default_rng(cfg.seed)
        self.env = TwinEnv(cfg.robot, cfg.task, cameras=list(cfg.observation.cameras), seed=cfg.seed)
        self.env.action_space.seed(cfg.seed)
        self.space = RLSpace(self.env.profile, self.env.task_config.kind, cfg)
        self.expert = make_expert(self.env.profile, self.env.task_config)
        self.agent = SACAgent(cfg.agent, self.space.obs_dim, self.space.act_dim, self.space.state_dim, seed=cfg.seed,
                              device=self.device)
        cap = cfg.buffer_capacity
        self.demo = ReplayBuffer(cap, self.space.obs_dim, self.space.act_dim)
        self.online = ReplayBuffer(cap, self.space.obs_dim, self.space.act_dim)
        self.classifier = None
        if cfg.reward == "classifier":
            from robot_stack.policies.hil.classifier import RewardClassifier

            self.classifier = RewardClassifier.load(cfg.classifier)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.on_episode = on_episode
        self.on_step = on_step
        self.teleop_target: np.ndarray | None = None
        self.logs: list[EpisodeLog] = []
        self.updates = 0
        self.env_steps = 0
        self.episode_seed = cfg.seed * 100003
        self._metrics = None
        self._last_losses: dict[str, float] = {}

    # -- pieces -----------------------------------------------------------------------------------
    def reward(self, obs: dict[str, np.ndarray], info: dict) -> tuple[float, bool]:
        """(reward, success) of the state reached."""
        if self.classifier is not None:
            success = self.classifier.predict(obs) >= self.cfg.classifier_threshold
        else:
            success = bool(info["success"])
        return float(success), success

    def expert_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        target = self.expert.act({k: np.asarray(v, dtype=float) for k, v in obs.items()})
        self.teleop_target = target
        return self.space.from_target(target, obs["joint_pos"], self.env.last_action)

    def _reset(self) -> tuple[dict, dict]:
        self.episode_seed += 1
        self.expert.reset()
        return self.env.reset(seed=self.episode_seed)

    def episode(self, policy: Callable[[np.ndarray, dict], tuple[np.ndarray, bool]], kind: str,
                learn: bool) -> EpisodeLog:
        """Run one episode; ``policy(obs_vec, obs) -> (action, intervened)``; store transitions when learning
        or collecting demos; ``learn``: update the agent after every step (past warmup)."""
        start = time.perf_counter()
        obs, info = self._reset()
        vec = self.space.observation(obs)
        ret, intervened, length = 0.0, 0, 0
        transitions = []
        success = False
        for _ in range(self.env.max_steps):
            self.teleop_target = None
            action, by_human = policy(vec, obs)
            previous = self.env.last_action.copy()
            target = self.space.to_target(action, obs["joint_pos"], previous)
            penalty = self.cfg.agent.gripper_toggle_penalty if self.space.gripper_toggles(
                action, obs["joint_pos"], previous) else 0.0
            if self.on_step is not None:
                self.on_step(StepRecord(obs, previous, action, target, self.teleop_target, by_human, kind))
            obs, _, _, truncated, info = self.env.step(target)
            reward, success = self.reward(obs, info)
            terminal = success and self.cfg.terminate_on_success
            next_vec = self.space.observation(obs)
            transitions.append((vec, action, reward, next_vec, terminal, by_human, penalty))
            ret += reward
            intervened += int(by_human)
            length += 1
            if kind == "train":
                self.online.add(vec, action, reward, next_vec, terminal, by_human, penalty)
                if by_human:
                    self.demo.add(vec, action, reward, next_vec, terminal, by_human, penalty)
                self.env_steps += 1
                if learn:
                    self.learn()
            vec = next_vec
            if terminal or truncated:
                break
        if kind == "demo" and success:
            for t in transitions:
                self.demo.add(*t)
        log = EpisodeLog(episode=len(self.logs), env_steps=self.env_steps, success=bool(success), ret=ret, length=length,
                         intervention_steps=intervened, intervention_rate=intervened / max(length, 1),
                         updates=self.updates, wall_s=time.perf_counter() - start, kind=kind,
                         losses=dict(self._last_losses) if kind == "train" else {})
        self.logs.append(log)
        self._write(log)
        if self.on_episode is not None:
            self.on_episode(log)
        return log

    def learn(self) -> None:
        cfg = self.cfg
        if self.env_steps < cfg.warmup_steps or len(self.online) + len(self.demo) == 0:
            return
        g = cfg.agent.utd_ratio
        for i in range(g):
            batch = mixed_batch(self.demo, self.online, cfg.agent.batch_size, cfg.agent.demo_ratio, self.rng)
            info = self.agent.update(batch, update_actor=i == g - 1)
            self.updates += 1
        self._last_losses = info

    def collect_demos(self) -> float:
        """Fill the demo buffer with ``demos`` successful expert episodes; returns the expert's success rate."""
        tries, wins = 0, 0
        while wins < self.cfg.demos and tries < 3 * self.cfg.demos:
            log = self.episode(lambda vec, obs: (self.expert_action(obs), False), "demo", learn=False)
            tries += 1
            wins += int(log.success)
        return wins / tries if tries else float("nan")

    def evaluate(self, episodes: int) -> float:
        wins = 0
        for _ in range(episodes):
            log = self.episode(lambda vec, obs: (self.agent.act(vec, deterministic=True), False), "eval", learn=False)
            wins += int(log.success)
        return wins / max(episodes, 1)

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.cfg
        start = time.perf_counter()
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            self._metrics = (self.out_dir / "metrics.jsonl").open("w")
        demo_success = self.collect_demos() if cfg.demos else float("nan")
        demo_transitions = len(self.demo)
        iv = cfg.intervener
        budget_end = iv.budget_fraction * cfg.env_steps
        state = {"left": 0, "best": -np.inf, "stalled": 0}
        next_eval = cfg.eval_every or None
        recent: deque[bool] = deque(maxlen=20)
        bar = tqdm(total=cfg.env_steps, desc=f"HIL {cfg.robot}/{cfg.task} seed {cfg.seed}", disable=not self.progress,
                   unit="step", leave=False)

        def policy(vec: np.ndarray, obs: dict) -> tuple[np.ndarray, bool]:
            progress = float(self.env.sim.progress())
            if progress > state["best"] + 1e-3:
                state["best"], state["stalled"] = progress, 0
            else:
                state["stalled"] += 1
            if state["left"] == 0 and iv.probability > 0 and self.env_steps < budget_end \
                    and state["stalled"] >= iv.patience and self.rng.random() < iv.probability:
                state["left"] = iv.steps
                self.expert.reset()  # take over from wherever the policy left the arm
            if state["left"] > 0:
                state["left"] -= 1
                return self.expert_action(obs), True
            if self.env_steps < cfg.warmup_steps and cfg.random_warmup:
                return self.rng.uniform(-1, 1, self.space.act_dim).astype(np.float32), False
            return self.agent.act(vec), False

        while self.env_steps < cfg.env_steps:
            state.update(left=0, best=-np.inf, stalled=0)
            before = self.env_steps
            log = self.episode(policy, "train", learn=True)
            recent.append(log.success)
            bar.update(self.env_steps - before)
            bar.set_postfix(success=f"{np.mean(recent):.2f}", interventions=self.online.intervention_count,
                            updates=self.updates)
            if next_eval is not None and self.env_steps >= next_eval:
                self.evaluate(cfg.eval_episodes)
                next_eval += cfg.eval_every
        bar.close()
        eval_success = self.evaluate(cfg.eval_episodes) if cfg.eval_episodes else None
        result = RunResult(episodes=self.logs, eval_success=eval_success, env_steps=self.env_steps,
                           wall_s=time.perf_counter() - start, demo_success=demo_success,
                           demo_transitions=demo_transitions, out_dir=self.out_dir)
        if self.out_dir is not None:
            self._metrics.close()
            self.agent.save(self.out_dir / "agent")
            self.demo.save(self.out_dir / "buffers" / "demo")
            self.online.save(self.out_dir / "buffers" / "online")
            plot_curves(self.logs, self.out_dir / "curves.png", title=f"{cfg.robot}/{cfg.task} seed {cfg.seed}")
        self.env.close()
        return result

    def _write(self, log: EpisodeLog) -> None:
        if self._metrics is not None:
            self._metrics.write(json.dumps(asdict(log)) + "\n")
            self._metrics.flush()


def train(cfg: HILConfig, out_dir: str | Path | None = None, progress: bool = True) -> RunResult:
    """Run ``cfg`` on the twin in-process; see the module docstring."""
    return Trainer(cfg, out_dir, progress).run()


def rolling(values: list[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    lo = np.maximum(np.arange(1, v.size + 1) - window, 0)
    return (c[1:] - c[lo]) / (np.arange(1, v.size + 1) - lo)


def plot_curves(logs: list[EpisodeLog] | dict[str, list[EpisodeLog]], path: str | Path, title: str = "",
                window: int = 20) -> Path:
    """Success rate and intervention rate (rolling over ``window`` train episodes) against env steps."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = logs if isinstance(logs, dict) else {"": logs}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, run in runs.items():
        eps = [e for e in run if e.kind == "train"]
        x = [e.env_steps for e in eps]
        ax1.plot(x, rolling([e.success for e in eps], window), label=label or None)
        ax2.plot(x, rolling([e.intervention_rate for e in eps], window), label=label or None)
    ax1.set(xlabel="env steps", ylabel=f"success rate (last {window} episodes)", ylim=(-0.02, 1.02))
    ax2.set(xlabel="env steps", ylabel=f"intervention rate (last {window} episodes)", ylim=(-0.02, 1.02))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if any(runs):
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
