"""Sequence dataset over zarr stores in the diffusion_policy ReplayBuffer layout.

A store holds ``data/<key>`` arrays concatenated over time and ``meta/episode_ends`` (int64
cumulative ends); a robot_stack store's episode boundaries are read from its commit record, and
its damaged episodes are refused (or skipped). Each sample is a window of Tp steps: observations for the first To steps and
actions for all Tp, padded at episode edges by repeating the first/last step (To-1 steps before
the start, Ta-1 after the end), exactly like diffusion_policy's ``SequenceSampler``. Low-dim data
and images (resized once to ``obs.image_size``) are held in memory. Episodes are split into train
and validation sets by episode.

Demo stores weight every sample 1. Intervention stores (HG-DAgger) keep only the samples whose
current step was driven by the human (``intervention`` true), weighted ``intervention_weight``.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import zarr

from robot_stack.errors import UserError
from robot_stack.policies.diffusion.config import DiffusionConfig, ShapeMeta
from robot_stack.policies.diffusion.image_cache import load_images

if TYPE_CHECKING:
    from robot_stack.data.integrity import Report
    from robot_stack.policies.diffusion.ee_actions import EndEffectorActions


@dataclass
class Buffer:
    """Episodes of one or more stores concatenated in memory."""

    data: dict[str, np.ndarray]
    episode_ends: np.ndarray
    step_weight: np.ndarray
    robot: str | None
    task: str | None = None
    """The twin task the episodes were recorded on, if they all name the same one."""


def _register_codecs() -> None:
    """Stores written with the recorder's JPEG codec need it registered with zarr (optional)."""
    try:
        importlib.import_module("robot_stack.data.jpeg")
    except ImportError:
        pass


def store_robot(root: zarr.Group) -> str | None:
    """Robot profile name recorded in the store's attributes, if exactly one is named."""
    record = dict(root.attrs).get("robot_stack") or {}
    names = {p.get("name") for p in (record.get("profiles") or {}).values() if isinstance(p, dict)}
    names.discard(None)
    return names.pop() if len(names) == 1 else dict(root.attrs).get("robot")


def store_task(root: zarr.Group) -> str | None:
    """Task named by every episode of the store (the recorder writes ``task`` per episode), if just one."""
    episodes = (dict(root.attrs).get("robot_stack") or {}).get("episodes") or []
    tasks = {e.get("task") for e in episodes if isinstance(e, dict)} - {None, ""}
    return tasks.pop() if len(tasks) == 1 else None


def _open(path: Path, keys: list[str]) -> tuple[zarr.Group, np.ndarray, list[str], Report]:
    """The store's group, its episode boundaries and its integrity report.

    Boundaries come from the commit record of a robot_stack store (``meta/episode_ends`` is derived
    from it and may lag it by an interrupted commit), else from ``meta/episode_ends``.
    """
    from robot_stack.data.integrity import verify_arrays
    from robot_stack.data.store import ATTRS_KEY, EpisodeStore

    try:
        root = zarr.open_group(str(path), mode="r")
        if "episode_ends" in (dict(root.attrs).get(ATTRS_KEY) or {}):
            store = EpisodeStore(path)
            return root, store.episode_ends, sorted(store.keys), store.verify(progress=True)
        ends = np.asarray(root["meta/episode_ends"][:], dtype=np.int64)
        available = sorted(root["data"].array_keys())
    except (KeyError, FileNotFoundError, ValueError, zarr.errors.BaseZarrError) as err:
        raise UserError(f"{path}: not a zarr store with data/<key> and meta/episode_ends ({err})") from None
    if len(ends) == 0 or np.any(np.diff(ends) <= 0) or ends[0] <= 0:
        raise UserError(f"{path}: meta/episode_ends must be increasing positive step counts, got {ends.tolist()[:8]}")
    arrays = {k: root[f"data/{k}"] for k in keys if k in available}
    return root, ends, available, verify_arrays(path, arrays, ends, checksums=False)


def _runs(ends: np.ndarray, episodes: list[int]) -> list[tuple[int, int]]:
    """Step ranges [a, b) of the given episodes, neighbours merged."""
    runs: list[tuple[int, int]] = []
    for e in episodes:
        a, b = (int(ends[e - 1]) if e else 0), int(ends[e])
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs


def load_store(path: str | Path, cfg: DiffusionConfig, weight: float | None = None, skip_damaged: bool = False) -> Buffer:
    """Read the keys ``cfg`` needs; ``weight`` None marks a demo store, a number an intervention store.

    Damaged episodes (``robot-stack data verify``) are refused with a one-line error naming them, or
    left out with ``skip_damaged`` (one line says how many)."""
    from robot_stack.data.integrity import usable_episodes

    _register_codecs()
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: dataset not found (give a zarr store recorded by 'robot-stack record')")
    keys = [*cfg.obs.lowdim_keys, *cfg.obs.image_keys, cfg.obs.action_key] + (["intervention"] if weight is not None else [])
    root, ends, available, report = _open(path, keys)
    missing = [k for k in keys if k not in available]
    if missing:
        raise UserError(f"{path}: missing data/{', data/'.join(missing)} (store has: {', '.join(available)}); "
                        f"change --obs-keys or the config")
    if len(ends) == 0:
        raise UserError(f"{path}: the store has no episodes")
    episodes = usable_episodes(report, list(range(len(ends))), skip_damaged=skip_damaged,
                                hint="--skip-damaged trains on the other {n}")
    if not episodes:
        raise UserError(f"{path}: every episode is damaged; nothing to train on")
    runs = _runs(ends, episodes)
    total = sum(b - a for a, b in runs)
    data = {}
    for key in keys:
        arr = root[f"data/{key}"]
        if key in cfg.obs.image_keys:
            if arr.dtype != np.uint8 or len(arr.shape) != 4 or arr.shape[-1] != 3:
                raise UserError(f"{path}: data/{key} must be uint8 (T, H, W, 3), got {arr.dtype} {arr.shape}")
            camera = key.removesuffix("_image")
            data[key] = load_images(arr, runs, cfg.obs.image_size, cfg.obs.rois.get(camera), f"{path.name}:{key}", camera)
        else:
            x = np.concatenate([np.asarray(arr[a:b]) for a, b in runs])
            data[key] = x.astype(bool) if key == "intervention" else x.reshape(total, -1).astype(np.float32)
            if key != "intervention" and not np.isfinite(data[key]).all():
                raise UserError(f"{path}: data/{key} contains NaN or Inf; fix or drop those episodes")
    lengths = np.diff(np.concatenate([[0], ends]))[episodes]
    step_weight = np.ones(total, np.float32) if weight is None else data.pop("intervention") * np.float32(weight)
    return Buffer(data, np.cumsum(lengths).astype(np.int64), step_weight, store_robot(root), store_task(root))


def concat(buffers: list[Buffer]) -> Buffer:
    keys = buffers[0].data.keys()
    offsets = np.cumsum([0] + [int(b.episode_ends[-1]) for b in buffers[:-1]])
    robots = {b.robot for b in buffers} - {None}
    tasks = {b.task for b in buffers} - {None}
    return Buffer(
        data={k: np.concatenate([b.data[k] for b in buffers]) for k in keys},
        episode_ends=np.concatenate([b.episode_ends + o for b, o in zip(buffers, offsets)]),
        step_weight=np.concatenate([b.step_weight for b in buffers]),
        robot=robots.pop() if len(robots) == 1 else None,
        task=tasks.pop() if len(tasks) == 1 else None,
    )


def sequence_indices(episode_ends: np.ndarray, episodes: np.ndarray, length: int, pad_before: int,
                     pad_after: int) -> np.ndarray:
    """Rows (buffer_start, buffer_end, sample_start, sample_end) as in diffusion_policy's SequenceSampler."""
    rows = []
    for ep in episodes:
        start = 0 if ep == 0 else int(episode_ends[ep - 1])
        end = int(episode_ends[ep])
        n = end - start
        for idx in range(-pad_before, n - length + pad_after + 1):
            b0, b1 = max(idx, 0) + start, min(idx + length, n) + start
            s0 = b0 - (idx + start)
            rows.append((b0, b1, s0, s0 + b1 - b0))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def split_episodes(n: int, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle episodes with ``seed`` and hold out round(n * val_ratio) (at least 1 when n >= 2)."""
    n_val = min(max(int(round(n * val_ratio)), 1 if (val_ratio > 0 and n >= 2) else 0), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class SequenceDataset(torch.utils.data.Dataset):
    def __init__(self, buffer: Buffer, episodes: np.ndarray, cfg: DiffusionConfig):
        h = cfg.horizon
        self.buffer, self.cfg = buffer, cfg
        self.obs_keys = list(cfg.obs.lowdim_keys) + list(cfg.obs.image_keys)
        self.action_key = cfg.obs.action_key
        rows = sequence_indices(buffer.episode_ends, episodes, h.horizon, h.n_obs_steps - 1, h.n_action_steps - 1)
        # the sample's "current" step (last observation) decides its weight; weight 0 drops it
        current = np.clip(rows[:, 0] - rows[:, 2] + h.n_obs_steps - 1, rows[:, 0], rows[:, 1] - 1) if len(rows) else rows[:, 0]
        weight = buffer.step_weight[current] if len(rows) else np.zeros(0, np.float32)
        keep = weight > 0
        self.rows, self.weights = rows[keep], weight[keep]

    def __len__(self) -> int:
        return len(self.rows)

    def _window(self, key: str, row: np.ndarray, length: int) -> np.ndarray:
        b0, b1, s0, s1 = (int(v) for v in row)
        x = self.buffer.data[key][b0:b1]
        if s0 > 0 or s1 < self.cfg.horizon.horizon:
            x = np.concatenate([np.repeat(x[:1], s0, 0), x, np.repeat(x[-1:], self.cfg.horizon.horizon - s1, 0)])
        return x[:length]

    def relative_actions(self) -> np.ndarray:
        """Every window's actions minus its current joint_pos, (N * Tp, Da): the statistics of relative actions."""
        h = self.cfg.horizon
        out = [self._window(self.action_key, row, h.horizon) - self._window("joint_pos", row, h.n_obs_steps)[-1]
               for row in self.rows]
        return np.concatenate(out) if out else np.zeros((0, self.buffer.data[self.action_key].shape[1]), np.float32)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.rows[i]
        to = self.cfg.horizon.n_obs_steps
        item = {k: torch.from_numpy(np.ascontiguousarray(self._window(k, row, to))) for k in self.obs_keys}
        item[self.action_key] = torch.from_numpy(self._window(self.action_key, row, self.cfg.horizon.horizon))
        item["weight"] = torch.tensor(float(self.weights[i]))
        return item


def to_ee_actions(buffer: Buffer, shape: ShapeMeta, key: str, ee: EndEffectorActions) -> tuple[Buffer, ShapeMeta]:
    """The buffer with its joint-target actions turned into end-effector targets (``obs.action_space: ee``)."""
    data = {**buffer.data, key: ee.encode(buffer.data[key])}
    return dataclasses.replace(buffer, data=data), dataclasses.replace(shape, predicted_dim=ee.dim)


def shape_meta(buffer: Buffer, cfg: DiffusionConfig, robot: str, joint_names: tuple[str, ...]) -> ShapeMeta:
    """ShapeMeta for ``cfg``'s keys from the loaded data; checks joint_pos/action against the profile."""
    n = len(joint_names)
    for key in ("joint_pos", "joint_vel", cfg.obs.action_key):
        if key in buffer.data and buffer.data[key].shape[1] != n:
            raise UserError(f"data/{key} has {buffer.data[key].shape[1]} values per step but robot {robot!r} has "
                            f"{n} joints ({', '.join(joint_names)}); use --robot for the profile it was recorded with")
    return ShapeMeta(robot=robot, joint_names=tuple(joint_names),
                     lowdim_dims={k: int(buffer.data[k].shape[1]) for k in cfg.obs.lowdim_keys},
                     image_keys=tuple(cfg.obs.image_keys), action_dim=int(buffer.data[cfg.obs.action_key].shape[1]))
