"""Joint calibration for servo-bus arms: servo ticks <-> joint radians.

A calibration file (YAML, kept in the ``calibration/`` folder) maps each joint of a profile to its
servo's raw position ticks::

    robot: so101                    # the profile it was made for (checked on load)
    joints:                         # every joint of the profile, gripper included
      shoulder_pan: {zero: 2048, direction: 1, min: 790, max: 3306}

``zero`` is the tick reading when the joint is at 0 rad (the MJCF/URDF zero pose), ``direction`` is
+1 when ticks grow with the joint angle (REP-103 right-hand rule about the joint axis) and -1 when
they shrink, and ``[min, max]`` is the tick range the servo may ever be commanded to (a second
safety net behind the profile's joint limits). Conversion::

    angle = direction * (ticks - zero) * 2*pi / resolution

where ``resolution`` (ticks per turn) comes from the servo model (4096 for STS3215 and the X series).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile
from robot_stack.typed_config import field, from_dict, load_yaml, to_dict


@dataclass(frozen=True)
class JointCalibration:
    zero: int = field("servo ticks at 0 rad")
    min: int = field("lowest tick the servo may be commanded to")
    max: int = field("highest tick the servo may be commanded to")
    direction: int = 1

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ValueError(f"direction must be 1 or -1, got {self.direction}")
        if not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")


@dataclass(frozen=True)
class CalibrationFile:
    robot: str = field("profile name the calibration was made for")
    joints: dict[str, JointCalibration] = field("per-joint calibration, keyed by joint name")


def joint_limits(profile: RobotProfile) -> tuple[np.ndarray, np.ndarray]:
    """Position limits (rad) of every joint in profile order, gripper (open..closed) included."""
    lower, upper = list(profile.lower), list(profile.upper)
    if profile.gripper:
        lower.append(min(profile.gripper.open, profile.gripper.closed))
        upper.append(max(profile.gripper.open, profile.gripper.closed))
    return np.array(lower, dtype=float), np.array(upper, dtype=float)


def load_calibration(path: str | Path, profile: RobotProfile) -> CalibrationFile:
    """Load and check a calibration file against ``profile`` (one-line UserError on any problem)."""
    cal = from_dict(CalibrationFile, load_yaml(path), str(path))
    missing = [n for n in profile.all_joint_names if n not in cal.joints]
    if missing:
        raise UserError(f"{path}: joints: no calibration for joint {missing[0]!r} "
                        f"(needs {', '.join(profile.all_joint_names)})")
    extra = sorted(set(cal.joints) - set(profile.all_joint_names))
    if extra:
        raise UserError(f"{path}: joints: {extra[0]!r} is not a joint of robot {profile.name!r}")
    if cal.robot != profile.name:
        raise UserError(f"{path}: made for robot {cal.robot!r}, not {profile.name!r} (use the matching file)")
    return cal


def save_calibration(cal: CalibrationFile, path: str | Path) -> None:
    text = ("# robot_stack servo calibration: angle = direction * (ticks - zero) * 2*pi / resolution;\n"
            "# [min, max] is the tick range the servo may be commanded to. See docs/servo.md.\n")
    lines = [f"robot: {cal.robot}", "joints:"]
    for name, j in cal.joints.items():
        lines.append(f"  {name}: {yaml.safe_dump(to_dict(j), default_flow_style=True, sort_keys=False).strip()}")
    Path(path).write_text(text + "\n".join(lines) + "\n")


def make_calibration(profile: RobotProfile, zeros: list[int] | None = None, directions: list[int] | None = None,
                     resolution: int = 4096, margin: int = 8) -> CalibrationFile:
    """A calibration from per-joint zero ticks and directions (default: servos centred, +1).

    The tick range covers the profile's joint limits plus ``margin`` ticks.
    """
    lower, upper = joint_limits(profile)
    n = len(lower)
    zeros = zeros or [resolution // 2] * n
    directions = directions or [1] * n
    scale = resolution / (2 * math.pi)
    joints = {}
    for name, lo, hi, zero, d in zip(profile.all_joint_names, lower, upper, zeros, directions):
        a, b = sorted((zero + d * lo * scale, zero + d * hi * scale))
        joints[name] = JointCalibration(zero=int(zero), direction=int(d), min=max(0, math.floor(a) - margin),
                                        max=min(resolution - 1, math.ceil(b) + margin))
    return CalibrationFile(robot=profile.name, joints=joints)


class TickMap:
    """Vectorised ticks <-> radians for the joints of a profile (profile order)."""

    def __init__(self, cal: CalibrationFile, profile: RobotProfile, resolutions: list[int]):
        joints = [cal.joints[n] for n in profile.all_joint_names]
        self.zero = np.array([j.zero for j in joints], dtype=float)
        self.direction = np.array([j.direction for j in joints], dtype=float)
        self.tick_min = np.array([j.min for j in joints], dtype=np.int64)
        self.tick_max = np.array([j.max for j in joints], dtype=np.int64)
        self.rad_per_tick = 2 * math.pi / np.asarray(resolutions, dtype=float)

    def radians(self, ticks: np.ndarray) -> np.ndarray:
        return self.direction * (np.asarray(ticks, dtype=float) - self.zero) * self.rad_per_tick

    def rates(self, tick_rates: np.ndarray) -> np.ndarray:
        """Signed tick rates (velocities) to joint rates (no offset)."""
        return self.direction * np.asarray(tick_rates, dtype=float)

    def ticks(self, radians: np.ndarray) -> np.ndarray:
        """Nearest ticks for ``radians`` (finite), clamped to each joint's [min, max]."""
        raw = np.rint(self.zero + self.direction * np.asarray(radians, dtype=float) / self.rad_per_tick)
        return np.clip(raw.astype(np.int64), self.tick_min, self.tick_max)

    def radian_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint range (rad) that the tick range [min, max] allows."""
        a, b = self.radians(self.tick_min), self.radians(self.tick_max)
        return np.minimum(a, b), np.maximum(a, b)
