"""Safety rules every arm command passes through, whatever the backend.

* joint position limits (profile), gripper range between ``open`` and ``closed``;
* a per-tick step limit from the joint velocity limits (a far target is approached, never jumped to);
* NaN/inf targets are rejected (the caller holds instead);
* Cartesian targets are clamped to the profile's workspace box, and Cartesian motions stay in it
  (``ArmCore`` checks the forward kinematics of every step; a floor plane holds for every command);
* a latched e-stop: while set, the arm holds where it was when the stop came;
* a watchdog for streamed commands: older than ``watchdog_periods`` control periods -> stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_stack.profile import RobotProfile

GRIPPER_SPEED_PER_S = 2.0
"""Gripper full-range strokes per second used as its step limit (the profile has no velocity for it)."""


@dataclass
class SafetyStats:
    rejected_non_finite: int = 0
    clamped_position: int = 0
    rate_limited: int = 0
    clamped_workspace: int = 0
    slowed_at_workspace: int = 0
    lifted_from_floor: int = 0
    ik_resets: int = 0
    stale_events: int = 0


@dataclass
class ArmSafety:
    profile: RobotProfile
    estopped: bool = False
    estop_reason: str = ""
    stats: SafetyStats = field(default_factory=SafetyStats)

    def __post_init__(self) -> None:
        p = self.profile
        lower, upper, speed = list(p.lower), list(p.upper), list(p.velocity_limits)
        if p.gripper:
            lo, hi = sorted((p.gripper.open, p.gripper.closed))
            lower.append(lo)
            upper.append(hi)
            speed.append(GRIPPER_SPEED_PER_S * (hi - lo))
        self.lower, self.upper = np.array(lower), np.array(upper)
        self.max_step = np.array(speed) * p.control_period

    def limit(self, target: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """A safe next position command: ``target`` clamped to limits, at most one step from ``previous``."""
        target = np.asarray(target, dtype=float)
        if target.shape != self.lower.shape:
            raise ValueError(f"expected {self.lower.size} joint targets, got shape {target.shape}")
        if not np.all(np.isfinite(target)):
            self.stats.rejected_non_finite += 1
            raise ValueError("joint target contains NaN or inf")
        clipped = np.clip(target, self.lower, self.upper)
        if np.any(clipped != target):
            self.stats.clamped_position += 1
        previous = np.clip(np.asarray(previous, dtype=float), self.lower, self.upper)
        step = clipped - previous
        bounded = np.clip(step, -self.max_step, self.max_step)
        if np.any(bounded != step):
            self.stats.rate_limited += 1
        return np.clip(previous + bounded, self.lower, self.upper)

    def clamp_workspace(self, position: np.ndarray) -> np.ndarray:
        ws = self.profile.workspace
        if ws is None:
            return np.asarray(position, dtype=float)
        clamped = np.clip(position, ws.lower, ws.upper)
        if np.any(clamped != position):
            self.stats.clamped_workspace += 1
        return clamped

    def inside_workspace(self, position: np.ndarray, margin: float = 0.0) -> float:
        """Signed distance (m) from a point to the faces of the box shrunk by ``margin``: > 0 inside, < 0 outside."""
        ws = self.profile.workspace
        if ws is None:
            return np.inf
        inside = np.minimum(position - (np.asarray(ws.lower) + margin), (np.asarray(ws.upper) - margin) - position)
        return float(inside.min()) if np.all(inside >= 0) else -self.outside_workspace(position, margin)

    def outside_workspace(self, position: np.ndarray, margin: float = 0.0) -> float:
        """How far (m) a point lies outside the workspace box shrunk by ``margin`` (0 inside)."""
        ws = self.profile.workspace
        if ws is None:
            return 0.0
        below = np.asarray(ws.lower) + margin - position
        above = position - (np.asarray(ws.upper) - margin)
        return float(np.linalg.norm(np.maximum(np.maximum(below, above), 0.0)))

    def is_stale(self, last_command_time: float | None, now: float) -> bool:
        if last_command_time is None:
            return False
        return now - last_command_time > self.profile.control.watchdog_periods * self.profile.control_period

    def set_estop(self, on: bool, reason: str = "") -> None:
        self.estopped = on
        self.estop_reason = reason if on else ""
