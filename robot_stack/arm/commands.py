"""Command sources: what the arm should do next, from the latest command message.

Each source turns one kind of contract command into a full joint target (``profile.all_joint_names``
order) at time ``now``; NaN entries mean "keep the previous command for this joint". Streamed
sources (forward commands, twists) are watched by the watchdog; setpoints (trajectories, poses)
are held once reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_stack.arm.kinematics import Kinematics


@dataclass
class TrajectorySource:
    """Time-parameterised joint trajectory, linearly interpolated (joint_trajectory_controller style)."""

    times: np.ndarray  # absolute node-clock seconds, strictly increasing
    positions: np.ndarray  # (N, n_all); NaN = joint not in the trajectory
    streamed = False

    @classmethod
    def start(cls, start_time: float, times_from_start: np.ndarray, positions: np.ndarray, q_now: np.ndarray) -> TrajectorySource:
        """Trajectory beginning at ``start_time`` from the current command ``q_now`` (joints it omits hold)."""
        named = ~np.all(np.isnan(positions), axis=0)
        filled = np.where(np.isnan(positions), q_now, positions)
        filled[:, ~named] = np.nan
        if times_from_start[0] > 0:
            first = np.where(named, q_now, np.nan)
            filled = np.vstack([first, filled])
            times_from_start = np.concatenate([[0.0], times_from_start])
        return cls(start_time + times_from_start, filled)

    @property
    def end_time(self) -> float:
        return float(self.times[-1])

    def target(self, now: float, q_cmd: np.ndarray) -> np.ndarray:
        if now <= self.times[0]:
            return np.where(np.isnan(self.positions[0]), np.nan, q_cmd) if now < self.times[0] else self.positions[0]
        k = int(np.searchsorted(self.times, now))
        if k >= len(self.times):
            return self.positions[-1]
        a = (now - self.times[k - 1]) / (self.times[k] - self.times[k - 1])
        return (1 - a) * self.positions[k - 1] + a * self.positions[k]


@dataclass
class PositionSource:
    """A streamed absolute position command (forward_command_controller style)."""

    positions: np.ndarray  # (n_all,), NaN = keep
    streamed = True

    def target(self, now: float, q_cmd: np.ndarray) -> np.ndarray:
        return self.positions


@dataclass
class PoseSource:
    """A Cartesian setpoint reached by differential IK, one step per control tick."""

    kinematics: Kinematics
    position: np.ndarray
    quat_xyzw: np.ndarray | None
    n_arm: int
    dt: float
    streamed = False

    def target(self, now: float, q_cmd: np.ndarray) -> np.ndarray:
        q_arm = self.kinematics.ik_step(q_cmd[: self.n_arm], self.position, self.quat_xyzw, self.dt)
        out = np.full_like(q_cmd, np.nan)
        out[: self.n_arm] = q_arm
        return out


@dataclass
class TwistSource:
    """A streamed Cartesian velocity (base frame): the pose target moves by the twist every tick."""

    kinematics: Kinematics
    pose: PoseSource
    linear: np.ndarray
    angular: np.ndarray
    clamp: object  # callable: position -> position inside the workspace
    streamed = True

    def target(self, now: float, q_cmd: np.ndarray) -> np.ndarray:
        dt = self.pose.dt
        self.pose.position = self.clamp(self.pose.position + self.linear * dt)
        if self.pose.quat_xyzw is not None and np.any(self.angular):
            self.pose.quat_xyzw = _rotate_xyzw(self.pose.quat_xyzw, self.angular * dt)
        return self.pose.target(now, q_cmd)


def _rotate_xyzw(q: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """Apply a small base-frame rotation (rotation vector, rad) to quaternion xyzw."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return q
    axis = rotvec / angle
    s = np.sin(angle / 2)
    dx, dy, dz, dw = axis[0] * s, axis[1] * s, axis[2] * s, np.cos(angle / 2)
    x, y, z, w = q
    out = np.array([
        dw * x + dx * w + dy * z - dz * y,
        dw * y - dx * z + dy * w + dz * x,
        dw * z + dx * y - dy * x + dz * w,
        dw * w - dx * x - dy * y - dz * z,
    ])
    return out / np.linalg.norm(out)
