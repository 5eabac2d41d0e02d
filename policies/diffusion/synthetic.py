"""Synthetic demo stores in the recorder's layout, for tests, benchmarks and trying the CLI.

Each episode moves the joints smoothly from a random start to a random goal; ``object_state``
holds the goal and the images show a square whose position encodes it, so a policy must read the
observations to act. ``action`` is the next step's joint position (absolute targets).
Written with plain zarr 3 in the diffusion_policy ReplayBuffer layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr


def episode(rng: np.random.Generator, length: int, n_joints: int) -> dict[str, np.ndarray]:
    start = rng.uniform(-0.5, 0.5, n_joints)
    goal = rng.uniform(-1.0, 1.0, n_joints)
    s = np.linspace(0.0, 1.0, length + 1)
    phase = s * s * (3 - 2 * s)  # smoothstep
    q = (start + (goal - start) * phase[:, None]).astype(np.float32)
    return {"joint_pos": q[:-1], "action": q[1:], "object_state": np.repeat(goal[None], length, 0).astype(np.float32)}


def render(goal: np.ndarray, q: np.ndarray, hw: tuple[int, int], camera: int) -> np.ndarray:
    """A frame with a goal square (position from goal[0:2]) and an arm square (from q[0:2])."""
    h, w = hw
    img = np.full((h, w, 3), 40 + 30 * camera, np.uint8)
    for (x, y), color, size in (((goal[0], goal[1]), (250, 60, 60), h // 6), ((q[0], q[1]), (60, 220, 60), h // 8)):
        cy, cx = int((y + 1) / 2 * (h - size)), int((x + 1) / 2 * (w - size))
        img[cy:cy + size, cx:cx + size] = color
    return img


def write_store(path: str | Path, n_episodes: int = 4, length: int = 40, n_joints: int = 6,
                cameras: tuple[str, ...] = (), image_hw: tuple[int, int] = (48, 64), seed: int = 0,
                robot: str = "so101", intervention_every: int = 0, rate_hz: float = 10.0) -> Path:
    """Write a store; ``intervention_every`` > 0 marks every other block of that many steps as intervened."""
    rng = np.random.default_rng(seed)
    eps = [episode(rng, length, n_joints) for _ in range(n_episodes)]
    data = {k: np.concatenate([e[k] for e in eps]) for k in eps[0]}
    total = len(data["action"])
    data["timestamp"] = np.arange(total, dtype=np.float64) / rate_hz
    data["joint_vel"] = np.concatenate([np.gradient(e["joint_pos"], 1 / rate_hz, axis=0) for e in eps]).astype(np.float32)
    data["ee_pose"] = np.tile(np.array([0.3, 0, 0.2, 0, 0, 0, 1], np.float32), (total, 1))
    t = np.arange(total)
    data["intervention"] = ((t // intervention_every) % 2 == 1) if intervention_every else np.zeros(total, bool)
    for c, cam in enumerate(cameras):
        data[f"{cam}_image"] = np.stack([render(g, q, image_hw, c) for g, q in zip(data["object_state"], data["joint_pos"])])
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs["robot_stack"] = {"format_version": 1, "profiles": {"synthetic": {"name": robot}}}
    for key, value in data.items():
        chunks = (1, *value.shape[1:]) if value.ndim == 4 else (min(1024, total), *value.shape[1:])
        root.create_array(f"data/{key}", data=value, chunks=chunks)
    root.create_array("meta/episode_ends", data=np.cumsum([length] * n_episodes).astype(np.int64))
    return Path(path)
