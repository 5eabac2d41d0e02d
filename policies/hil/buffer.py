"""Replay buffers: a fixed-capacity ring of transitions, resumable through the crash-safe episode store.

A transition is ``(obs, action, reward, next_obs, done, intervention, penalty)``; ``penalty`` is the
discrete gripper critic's extra reward (the toggle penalty, 0 otherwise). ``save(path)`` appends
the transitions added since the last save to that path as one committed segment of a
:class:`robot_stack.data.EpisodeStore` (zarr 3, the diffusion_policy layout, one atomic commit per
save), so a save interrupted at any moment leaves the previous save readable and saving a large
buffer every few minutes costs only the new steps. ``load(path)`` restores the newest
``capacity`` transitions.

``mixed_batch`` draws RLPD's symmetric batches: ``demo_ratio`` of the samples from the demo buffer,
the rest from the online buffer (all from whichever one is not empty). Buffers and batches are numpy
on the CPU; ``to_tensors`` is where a batch becomes float32 tensors on the learner's device.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from robot_stack.errors import UserError

if TYPE_CHECKING:
    import torch

Batch = dict[str, np.ndarray]
FIELDS = ("obs", "action", "reward", "next_obs", "done", "intervention", "penalty")


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity, self.obs_dim, self.act_dim = int(capacity), int(obs_dim), int(act_dim)
        self.data: Batch = {
            "obs": np.zeros((capacity, obs_dim), np.float32),
            "action": np.zeros((capacity, act_dim), np.float32),
            "reward": np.zeros(capacity, np.float32),
            "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "done": np.zeros(capacity, np.float32),
            "intervention": np.zeros(capacity, bool),
            "penalty": np.zeros(capacity, np.float32),
        }
        self.size = 0
        self.added = 0  # transitions ever added (the ring position is added % capacity)
        self._saved: dict[str, int] = {}  # store path -> self.added at its last save

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, done: bool,
            intervention: bool = False, penalty: float = 0.0) -> None:
        """Add one transition; ``done`` means terminal (no bootstrapping), not a time-limit truncation."""
        i = self.added % self.capacity
        d = self.data
        d["obs"][i] = obs
        d["action"][i] = action
        d["reward"][i] = reward
        d["next_obs"][i] = next_obs
        d["done"][i] = float(done)
        d["intervention"][i] = bool(intervention)
        d["penalty"][i] = penalty
        self.added += 1
        self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        """``n`` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        idx = rng.integers(0, self.size, n)
        return {k: v[idx] for k, v in self.data.items()}

    def ordered(self) -> Batch:
        """All stored transitions, oldest first."""
        start = self.added % self.capacity if self.size == self.capacity else 0
        idx = (start + np.arange(self.size)) % self.capacity
        return {k: v[idx] for k, v in self.data.items()}

    @property
    def intervention_count(self) -> int:
        return int(self.data["intervention"][: self.size].sum())

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path, fsync: bool = True) -> int:
        """Append the transitions not yet saved to ``path`` (one atomic commit); returns how many."""
        from robot_stack.data import EpisodeStore

        path = Path(path)
        key = str(path.resolve())
        store = EpisodeStore(path, "a", fsync=fsync)
        self._check_store(store, path)
        if key not in self._saved and store.n_steps:
            raise UserError(f"{path}: already holds another buffer's transitions; save to a new folder")
        new = min(self.added - self._saved.get(key, 0), self.size)
        if new <= 0:
            return 0
        stop = self.added % self.capacity
        idx = (stop - new + np.arange(new)) % self.capacity
        store.append_episode({k: v[idx] for k, v in self.data.items()}, task="replay_buffer",
                             extra={"capacity": self.capacity, "added": self.added})
        self._saved[key] = self.added
        return new

    @classmethod
    def load(cls, path: str | Path, capacity: int | None = None) -> ReplayBuffer:
        """A buffer with the newest ``capacity`` (default: the saved buffer's) transitions from ``path``."""
        from robot_stack.data import EpisodeStore

        path = Path(path)
        store = EpisodeStore(path, "r")
        if store.n_episodes == 0:
            raise UserError(f"{path}: no saved replay buffer here")
        cls._check_store(store, path)
        last = store.episodes[-1].extra
        capacity = int(capacity or last.get("capacity", store.n_steps))
        keys = store.keys
        buf = cls(capacity, keys["obs"]["shape"][0], keys["action"]["shape"][0])
        n = min(store.n_steps, capacity)
        start = store.n_steps - n
        for k in FIELDS:
            buf.data[k][:n] = store.array(k)[start: store.n_steps]
        buf.size = buf.added = n
        buf._saved[str(path.resolve())] = n
        return buf

    @staticmethod
    def _check_store(store, path: Path) -> None:
        if store.n_steps and set(store.keys) != set(FIELDS):
            raise UserError(f"{path}: not a replay buffer (keys {', '.join(store.keys)})")


def mixed_batch(demo: ReplayBuffer, online: ReplayBuffer, batch_size: int, demo_ratio: float,
                rng: np.random.Generator) -> Batch:
    """RLPD's symmetric sampling: ``round(batch_size * demo_ratio)`` demo samples, the rest online.

    An empty buffer contributes nothing and the other fills the whole batch."""
    if len(demo) == 0 and len(online) == 0:
        raise ValueError("both buffers are empty")
    n_demo = int(round(batch_size * demo_ratio))
    if len(online) == 0:
        n_demo = batch_size
    elif len(demo) == 0:
        n_demo = 0
    parts = [b.sample(n, rng) for b, n in ((demo, n_demo), (online, batch_size - n_demo)) if n > 0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def to_tensors(batch: Batch, device: torch.device | str) -> dict[str, torch.Tensor]:
    """``batch`` as float32 torch tensors on ``device`` (``SACAgent.update`` calls this on every batch)."""
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(device, non_blocking=True)
            for k, v in batch.items()}
