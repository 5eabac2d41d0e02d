"""What a task is, independent of the simulator: its configuration and its objects' state.

Tasks are configured in ``config/tasks/<name>.yaml`` (``TaskConfig``). ``object_state`` (the
simulator's ground truth of the task's objects, a privileged observation) is derived from the object
poses the twin publishes on ``object_poses``. Hardware-side code (policy server, recorder, actors)
learns what a task is here; the MuJoCo side (scene objects, reset, success) lives in
``robot_stack.sim.tasks``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from robot_stack import resources
from robot_stack.typed_config import from_yaml


@dataclass(frozen=True)
class ObjectConfig:
    half_size: tuple[float, float, float] = (0.015, 0.015, 0.015)
    mass: float = 0.03
    friction: float = 1.0
    rgba: tuple[float, float, float, float] = (0.85, 0.2, 0.2, 1.0)


@dataclass(frozen=True)
class Randomization:
    """Reset and domain randomisation; ranges are [low, high], sampled uniformly per reset."""

    object_x: tuple[float, float] = (0.4, 0.6)
    """Object x as a fraction of the workspace box (0 = lower bound, 1 = upper bound)."""
    object_y: tuple[float, float] = (0.4, 0.6)
    object_yaw: tuple[float, float] = (-0.4, 0.4)
    """rad"""
    target_x: tuple[float, float] = (0.4, 0.6)
    target_y: tuple[float, float] = (0.4, 0.6)
    target_z: tuple[float, float] = (0.15, 0.45)
    """Target height as a fraction of the workspace box (reach only)."""
    target_yaw: tuple[float, float] = (0.0, 0.0)
    min_separation: float = 0.06
    """Minimum object-to-target distance, m (push)."""
    friction_scale: tuple[float, float] = (1.0, 1.0)
    mass_scale: tuple[float, float] = (1.0, 1.0)
    camera_pos_jitter: float = 0.0
    """Max fixed-camera position offset per axis, m."""
    camera_rot_jitter: float = 0.0
    """Max fixed-camera rotation, rad."""
    light_scale: tuple[float, float] = (1.0, 1.0)
    """Scale of every light's intensity (scene lights and the headlight)."""
    table_color_shift: float = 0.0
    """Max shift of each of the table's R, G, B values (0-1 scale)."""
    object_color_shift: float = 0.0
    """Max shift of each of the task objects' R, G, B values (0-1 scale)."""
    action_latency: tuple[int, int] = (0, 0)
    """Delay of position targets, control ticks (integers, inclusive)."""
    joint_noise: float = 0.0
    """Max offset of the initial arm joints from home, rad."""


@dataclass(frozen=True)
class TaskConfig:
    kind: Literal["reach", "pick_cube", "push"]
    episode_seconds: float = 10.0
    success_distance: float = 0.015
    """reach: EE-to-target distance, m; push: block-to-target distance, m."""
    yaw_tolerance: float = 0.3
    """push: block yaw error, rad (the square block is symmetric every 90 degrees)."""
    lift_height: float = 0.05
    """pick_cube: lift above the resting height, m."""
    object: ObjectConfig = ObjectConfig()
    randomization: Randomization = Randomization()
    name: str = ""


def load_task_config(name_or_path: str) -> TaskConfig:
    """``reach``, ``pick_cube``, ``push`` or a path to a task YAML."""
    path = resources.find_config("tasks", str(name_or_path))
    cfg = from_yaml(TaskConfig, path)
    return dataclasses.replace(cfg, name=cfg.name or path.stem)


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def _quat_yaw(wxyz: np.ndarray) -> float:
    w, x, y, z = wxyz
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


OBJECT_DIMS = {"reach": 3, "pick_cube": 7, "push": 6}
"""Length of ``object_state`` per task kind."""


def object_state_from_poses(kind: str, poses: np.ndarray) -> np.ndarray:
    """``object_state`` of a task from its ``object_poses`` rows (x, y, z, qx, qy, qz, qw).

    reach: target xyz (3); pick_cube: cube pose (7); push: block x, y, yaw + target x, y, yaw (6)."""
    poses = np.asarray(poses, dtype=float).reshape(-1, 7)
    expected = {"reach": 1, "pick_cube": 1, "push": 2}[kind]
    if len(poses) != expected:
        raise ValueError(f"{kind}: expected {expected} object poses, got {len(poses)}")
    if kind == "reach":
        return poses[0, :3].copy()
    if kind == "pick_cube":
        return poses[0].copy()

    def planar(row: np.ndarray) -> list[float]:
        x, y, z, w = row[3:7]
        return [row[0], row[1], _quat_yaw(np.array([w, x, y, z]))]

    return np.array(planar(poses[0]) + planar(poses[1]))


def object_poses_from_state(config: TaskConfig, state: np.ndarray) -> np.ndarray:
    """Inverse of ``object_state_from_poses``: (k, 7) pose rows (planar states at the objects' resting height)."""
    s = np.asarray(state, dtype=float).ravel()
    if config.kind == "reach":
        return np.array([[*s[:3], 0.0, 0.0, 0.0, 1.0]])
    if config.kind == "pick_cube":
        return s[:7].reshape(1, 7).copy()

    def row(x: float, y: float, z: float, yaw: float) -> list[float]:
        w, qx, qy, qz = _yaw_quat(yaw)
        return [x, y, z, qx, qy, qz, w]

    return np.array([row(s[0], s[1], config.object.half_size[2], s[2]), row(s[3], s[4], 0.0005, s[5])])
