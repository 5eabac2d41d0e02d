"""hil_learner: SAC/RLPD updates from the actors' transitions; ships actor weights; checkpoints and resumes.

* Transitions (``hil/transitions``, validated by ``transport``) go to the online buffer; intervened
  steps go to the demo buffer too. The demo buffer starts with the demos of a recorded dataset
  (``demos``: the recorder's zarr), converted by ``demos.load_demos``.
* After ``warmup_steps`` online transitions it runs ``utd_ratio`` updates per transition received
  (the actor and temperature on every ``utd_ratio``-th), on batches drawn ``demo_ratio`` from the demo
  buffer and the rest from the online buffer, in slices of at most ``update_slice_s`` so messages
  keep flowing. The networks and batches live on ``device`` (the run config's ``device`` unless the
  parameter names one: ``auto``, ``cpu``, ``cuda``, ``cuda:<n>``); the buffers stay in host memory.
* Every ``weights_period_s`` it publishes the actor's weights (CPU float32 arrays, whatever the
  learner's device; latched ``hil/weights``); every
  0.2 s its status (latched ``hil/learner_status``: the actors' acknowledgements and counters).
* Every ``checkpoint_period_s`` (and on shutdown) it writes ``<run_dir>/learner/``: the agent
  (safetensors + JSON) into ``agent_a/`` or ``agent_b/`` (never the one the last checkpoint names),
  the new transitions appended to ``online.zarr`` and ``demo.zarr``, then ``state.json`` (the commit
  point: agent folder, counters, acknowledgements, stored buffer lengths); a restarted learner resumes
  from there and the actors resend whatever came after the checkpoint. ``metrics.jsonl`` and ``episodes.png`` in
  ``run_dir`` record every finished episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import json
import os
import shutil
import sys
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np
from rclpy.node import Node

from robot_stack.errors import UserError
from robot_stack.node import run_node
from robot_stack.node_options import read_options
from robot_stack.typed_config import field
from robot_stack.policies.hil import transport
from robot_stack.policies.hil.actor_node import agent_fingerprint, load_run_config
from robot_stack.policies.hil.delivery import Inbox
from robot_stack.policies.hil.transport import ActorStats, LearnerStatus, TransitionBatch, TransitionSchema, Weights

STATE_VERSION = 1


@dataclass(frozen=True)
class LearnerOptions:
    device: str = field("learner device: auto, cpu, cuda, cuda:<n> (default: the run config's)", default="")
    run_dir: str = field("run folder: checkpoints, metrics.jsonl, episodes.png (resumed if present)", default="")
    demos: str = field("recorded demo dataset (zarr) for the demo buffer, read on the first start", default="")
    weights_period_s: float = field("seconds between weight publications (0: the run config's)", default=0.0)
    checkpoint_period_s: float = field("seconds between checkpoints", default=60.0)
    update_slice_s: float = field("longest stretch of updates between message handling", default=0.05)
    progress: bool = field("live table (default: when stdout is a terminal)", default=sys.stdout.isatty())


class HilLearner(Node):
    def __init__(self, **kwargs):
        super().__init__("hil_learner", **kwargs)
        import torch
        import yaml

        from robot_stack.policies.hil.agent import SACAgent, resolve_device
        from robot_stack.policies.hil.buffer import ReplayBuffer
        from robot_stack.policies.hil.config import replace
        from robot_stack.policies.hil.progress import Display
        from robot_stack.typed_config import to_dict

        self.cfg, self.space, task = load_run_config(self)
        options = read_options(self, LearnerOptions)
        device = options.device
        self.device = resolve_device(device or self.cfg.device)  # a missing GPU: one line, exit 2
        self.cfg = replace(self.cfg, device=device or self.cfg.device)
        run_dir, demos, period = options.run_dir, options.demos, options.weights_period_s
        self.checkpoint_s, self.slice_s, live = options.checkpoint_period_s, options.update_slice_s, options.progress
        if not run_dir:
            raise UserError("hil_learner needs run_dir:=<folder> (checkpoints and metrics go there)")
        torch.set_num_threads(max(1, self.cfg.torch_threads))
        self.run_dir = Path(run_dir).expanduser()
        self.ck_dir = self.run_dir / "learner"
        sp, cap = self.space, self.cfg.buffer_capacity
        self.agent = SACAgent(self.cfg.agent, sp.obs_dim, sp.act_dim, sp.state_dim, seed=self.cfg.seed,
                              device=self.device)
        self.demo = ReplayBuffer(cap, sp.obs_dim, sp.act_dim)
        self.online = ReplayBuffer(cap, sp.obs_dim, sp.act_dim)
        self.rng = np.random.default_rng(self.cfg.seed)
        self.env_steps = self.updates = self.weights_version = self.published_updates = 0
        self.episodes: list = []
        self.open: dict[str, dict] = {}  # "session/episode" -> running counters of an unfinished episode
        self.losses: dict[str, float] = {}
        self.inbox = Inbox()
        self.agent_dir = ""  # agent_a or agent_b: the folder of the last complete checkpoint
        self.actors: dict[str, ActorStats] = {}
        self.resumed = self._resume()
        if not self.resumed:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
            if demos:
                self._load_demos(demos)
        self.run_token = run_token(self.run_dir)
        self.schema = TransitionSchema(sp.obs_dim, sp.act_dim)
        self.layout = {k: tuple(v.shape) for k, v in self.agent.actor_state().items()}
        self.fingerprint = agent_fingerprint(self.layout)
        self.send_weights = transport.publisher(self, "weights")
        self.send_status = transport.publisher(self, "learner_status")
        self.rejected = transport.subscribe(self, "transitions", self._on_transitions, schema=self.schema)
        transport.subscribe(self, "actor_stats", self._on_actor_stats, rejections=self.rejected)
        self.rate_window: deque[tuple[float, int]] = deque(maxlen=10)
        self.publish_latency_ms: deque[float] = deque(maxlen=100)
        self.display = Display(lambda text: self.get_logger().info(text), live=bool(live))
        self.last_checkpoint = time.monotonic()
        self.create_timer(0.01, self.train)
        self.create_timer(period or self.cfg.weights_period_s, self.publish_weights)
        self.create_timer(0.2, self.publish_status)
        self.create_timer(1.0, self.tick)
        self.publish_weights()
        self.get_logger().info(
            f"learner for {self.cfg.robot}/{self.cfg.task} in {self.run_dir}: "
            + (f"resumed at {self.env_steps} transitions, {self.updates} updates, weights v{self.weights_version}; "
               if self.resumed else "new run; ")
            + f"buffers online {len(self.online)}, demo {len(self.demo)}; obs {sp.obs_dim}, act {sp.act_dim}; "
            + f"learning on {self.device}; run token {self.run_token} (actors follow it: learner_run:={self.run_token})")

    # -- data -----------------------------------------------------------------------------------
    def _load_demos(self, path: str) -> None:
        from robot_stack.policies.hil.demos import load_demos

        classifier = None
        if self.cfg.reward == "classifier":
            from robot_stack.policies.hil.classifier import RewardClassifier

            classifier = RewardClassifier.load(self.cfg.classifier)
        episodes, n = load_demos(path, self.space, self.demo, classifier, self.cfg.classifier_threshold,
                                 self.cfg.agent.gripper_toggle_penalty)
        self.get_logger().info(f"demo buffer: {n} transitions from {episodes} episodes of {path}")

    def _on_transitions(self, batch: TransitionBatch) -> None:
        from robot_stack.policies.hil.loop import EpisodeLog

        for t in self.inbox.accept(batch):
            args = (t.obs, t.action, t.reward, t.next_obs, t.done, t.intervention, t.penalty)
            self.online.add(*args)
            if t.intervention:
                self.demo.add(*args)
            self.env_steps += 1
            key = f"{batch.session}/{t.episode}"
            ep = self.open.setdefault(key, {"steps": 0, "interventions": 0, "ret": 0.0, "start": time.time()})
            ep["steps"] += 1
            ep["interventions"] += int(t.intervention)
            ep["ret"] += t.reward
            if t.done or t.truncated:
                del self.open[key]
                log = EpisodeLog(episode=len(self.episodes), env_steps=self.env_steps, success=t.reward > 0,
                                 ret=ep["ret"], length=ep["steps"], intervention_steps=ep["interventions"],
                                 intervention_rate=ep["interventions"] / ep["steps"], updates=self.updates,
                                 wall_s=time.time() - ep["start"], losses=dict(self.losses))
                self.episodes.append(log)
                with (self.run_dir / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps(log.__dict__) + "\n")

    def _on_actor_stats(self, stats: ActorStats) -> None:
        self.actors[stats.actor] = stats

    # -- learning -------------------------------------------------------------------------------
    def target_updates(self) -> int:
        """RLPD's schedule: ``utd_ratio`` updates per transition from the ``warmup_steps``-th on."""
        c = self.cfg
        if self.env_steps < max(c.warmup_steps, 1):
            return 0
        return c.agent.utd_ratio * (self.env_steps - c.warmup_steps + 1)

    def train(self) -> None:
        from robot_stack.policies.hil.buffer import mixed_batch

        g = self.cfg.agent.utd_ratio
        deadline = time.perf_counter() + self.slice_s
        while self.updates < self.target_updates() and time.perf_counter() < deadline:
            batch = mixed_batch(self.demo, self.online, self.cfg.agent.batch_size, self.cfg.agent.demo_ratio, self.rng)
            info = self.agent.update(batch, update_actor=self.updates % g == g - 1)
            self.updates += 1
            if self.updates % g == 0:
                self.losses = info

    @property
    def updates_per_s(self) -> float:
        w = self.rate_window
        return (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0]) if len(w) > 1 and w[-1][0] > w[0][0] else 0.0

    def publish_weights(self) -> None:
        if self.weights_version and self.updates == self.published_updates:
            return
        start = time.perf_counter()
        self.weights_version += 1
        self.published_updates = self.updates
        self.send_weights(Weights(self.weights_version, self.updates, self.fingerprint, self.agent.actor_state(),
                                  stamp=time.time(), run=self.run_token))
        self.publish_latency_ms.append((time.perf_counter() - start) * 1e3)

    def publish_status(self) -> None:
        extra = {k: float(v) for k, v in self.losses.items() if np.isfinite(v)}
        self.send_status(LearnerStatus(dict(self.inbox.acks), dict(self.inbox.durable), self.updates,
                                       float(self.updates_per_s), self.env_steps, len(self.online), len(self.demo),
                                       self.weights_version, len(self.episodes),
                                       sum(e.success for e in self.episodes), extra))

    def tick(self) -> None:
        from robot_stack.policies.hil.progress import Snapshot

        self.rate_window.append((time.monotonic(), self.updates))
        if time.monotonic() - self.last_checkpoint >= self.checkpoint_s:
            self.checkpoint()
        self.display.update(Snapshot(self.episodes, self.updates, self.updates_per_s, len(self.online),
                                     len(self.demo), self.env_steps, self.weights_version, self.rejected.count,
                                     dict(self.actors), self.rejected.last))

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Agent, then the buffers' new transitions, then ``state.json`` (the commit point of a checkpoint)."""
        from robot_stack.data import EpisodeStore
        from robot_stack.policies.hil.progress import plot, write_metrics

        start = time.perf_counter()
        agent = "agent_b" if self.agent_dir == "agent_a" else "agent_a"  # never overwrite the committed one
        self.agent.save(self.ck_dir / agent)
        stored = {}
        for name in ("online", "demo"):
            path = self.ck_dir / f"{name}.zarr"
            getattr(self, name).save(path)
            stored[name] = EpisodeStore(path, "r").n_steps
        state = {"version": STATE_VERSION, "agent": agent, "env_steps": self.env_steps, "updates": self.updates,
                 "stored": stored,
                 "weights_version": self.weights_version, "episodes": len(self.episodes), "open": self.open,
                 "acks": self.inbox.checkpointed(), "losses": self.losses}
        tmp = self.ck_dir / "state.json.partial"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.ck_dir / "state.json")
        self.agent_dir = agent
        write_metrics(self.run_dir / "metrics.jsonl", self.episodes)
        if self.episodes:
            plot(self.episodes, self.run_dir / "episodes.png", f"HIL {self.cfg.robot}/{self.cfg.task}")
        self.last_checkpoint = time.monotonic()
        self.get_logger().info(f"checkpoint: {self.env_steps} transitions, {self.updates} updates, "
                               f"{len(self.episodes)} episodes ({1e3 * (time.perf_counter() - start):.0f} ms)")

    def _resume(self) -> bool:
        path = self.ck_dir / "state.json"
        if not path.is_file():
            if self.ck_dir.exists():  # killed before its first checkpoint committed: nothing here counts
                aside = self.ck_dir.with_name("learner.uncommitted")
                shutil.rmtree(aside, ignore_errors=True)
                self.ck_dir.rename(aside)
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
                self.get_logger().warning(f"{self.ck_dir} had no committed checkpoint: moved to {aside.name}, "
                                          "starting afresh (the actors resend what they hold)")
            return False
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: invalid JSON ({err.msg})") from None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise UserError(f"{path}: not a learner state of version {STATE_VERSION}")
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{path}: incomplete learner state ({type(err).__name__}: {err})") from None
        return True

    def _restore(self, state: dict) -> None:
        from robot_stack.data import EpisodeStore
        from robot_stack.data.ops import drop_episodes
        from robot_stack.policies.hil.buffer import ReplayBuffer
        from robot_stack.policies.hil.progress import read_metrics, write_metrics

        self.agent_dir = str(state["agent"])
        self.agent.load(self.ck_dir / self.agent_dir)
        cap = self.cfg.buffer_capacity
        for name in ("online", "demo"):
            store, want = self.ck_dir / f"{name}.zarr", int(state["stored"][name])
            have = EpisodeStore(store, "r").episode_ends if store.exists() else np.zeros(0, np.int64)
            if (have > want).any():  # saved by a checkpoint that died before its state.json: not part of it
                self.get_logger().warning(f"{store.name}: dropping {int(have[-1]) - want} transitions saved after "
                                          "the last complete checkpoint (the actors resend them)")
                drop_episodes(store, [i for i, end in enumerate(have) if end > want])
            if want:
                setattr(self, name, ReplayBuffer.load(store, capacity=cap))
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
        self.weights_version = int(state["weights_version"])
        self.inbox = Inbox({str(k): int(v) for k, v in state["acks"].items()})
        self.open = dict(state.get("open", {}))
        self.losses = dict(state.get("losses", {}))
        self.episodes = read_metrics(self.run_dir / "metrics.jsonl", limit=int(state["episodes"]))
        write_metrics(self.run_dir / "metrics.jsonl", self.episodes)  # episodes logged after the checkpoint return
        self.published_updates = -1  # publish the checkpoint's weights as a new version at once

    def close(self) -> None:
        try:
            self.checkpoint()
        finally:
            self.display.close()


def run_token(run_dir: Path) -> str:
    """This run's token (``<run_dir>/run_token``, made on the first start and kept across restarts)."""
    path = run_dir / "run_token"
    if not path.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(uuid.uuid4().hex[:16] + "\n")
        tmp.replace(path)
    token = path.read_text().strip()
    if not transport.NAME.match(token):
        raise UserError(f"{path}: not a run token (delete it to make a new one; actors then need learner_run:=)")
    return token


def main() -> None:
    run_node(HilLearner)


if __name__ == "__main__":
    main()
