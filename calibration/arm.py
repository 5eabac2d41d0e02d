"""Joint calibration of servo-bus arms: raw servo ticks -> the calibration file of ``drivers/servo``.

The file format, loader and tick <-> radian map belong to ``robot_stack.drivers.servo.calibration``;
this module only measures the numbers that go into it:

* **zero** (offsets): the arm is put in its zero pose (every joint at 0 rad, the MJCF zero pose; a
  jig or the pictures in docs/calibration.md) and the raw ticks are recorded (median of a few reads).
* **direction**: from a second, known *reference* pose (sign of tick change / angle change, checked
  against the servo resolution), from the user moving each joint a little in its positive
  direction (REP-103 right-hand rule), or from the profile's existing calibration file.
* **range** ``[min, max]``: the extremes seen while the user moves every joint through its full
  range, or the profile's joint limits mapped through zero and direction (plus a margin).

``RawBus`` reads ticks without any calibration and never enables torque. ``ArmCalibrator`` holds
the recorded steps and builds the ``CalibrationFile``; the CLI (prompts) and the calibration node
(``std_srvs/Trigger`` services) both drive it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from robot_stack.drivers.servo import protocol as P
from robot_stack.drivers.servo.backend import Bus, no_answer
from robot_stack.drivers.servo.calibration import (
    CalibrationFile, JointCalibration, joint_limits, load_calibration, make_calibration,
)
from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile

DirectionSource = Literal["reference", "moved", "profile"]
RangeSource = Literal["profile", "moved"]


class RawBus:
    """Present-position ticks of the profile's servos, read one servo at a time (no calibration)."""

    def __init__(self, profile: RobotProfile, port: str | None = None, *, retries: int = 3, timeout_ms: float = 100.0):
        hw = profile.hardware
        if hw.backend not in ("dynamixel", "feetech"):
            raise UserError(f"robot {profile.name!r}: hardware.backend is {hw.backend!r}, not a servo bus "
                            "(joint calibration is for dynamixel and feetech arms)")
        names = profile.all_joint_names
        if len(hw.ids) != len(names) or len(hw.models) != len(names):
            raise UserError(f"robot {profile.name!r}: hardware.ids and hardware.models need one entry per joint "
                            f"({', '.join(names)})")
        self.ids, self.retries = list(hw.ids), retries
        self.models = [P.get_model(m) for m in hw.models]
        self.resolutions = [m.resolution for m in self.models]
        self.port_name = port or hw.port
        self.bus = Bus(self.port_name, hw.baudrate, hw.backend, timeout_ms)

    def read_ticks(self) -> np.ndarray:
        """Raw present position of every servo (profile order), ticks."""
        out = []
        for sid, model in zip(self.ids, self.models):
            reg = model.reg("present_position")
            for _ in range(self.retries + 1):
                self.bus.flush()
                raw, result, _ = self.bus.packets.readTxRx(self.bus.port, sid, reg.address, reg.size)
                if result == self.bus.ok and len(raw) >= reg.size:
                    out.append(reg.decode(bytes(raw)))
                    break
            else:
                raise no_answer(sid, self.port_name)
        return np.array(out, dtype=np.int64)

    def sample(self, n: int = 5, period: float = 0.02) -> np.ndarray:
        """Median of ``n`` reads (rejects a glitch), ticks."""
        reads = []
        for _ in range(n):
            reads.append(self.read_ticks())
            time.sleep(period)
        return np.rint(np.median(np.array(reads), axis=0)).astype(np.int64)

    def release(self) -> None:
        """Torque off on every servo (the arm goes limp: support it first)."""
        for sid, model in zip(self.ids, self.models):
            reg = model.reg("torque_enable")
            for _ in range(self.retries + 1):
                self.bus.flush()
                result, _ = self.bus.packets.write1ByteTxRx(self.bus.port, sid, reg.address, 0)
                if result == self.bus.ok:
                    break
            else:
                raise no_answer(sid, self.port_name)

    def close(self) -> None:
        self.bus.close()


@dataclass
class ArmCalibrator:
    """The recorded calibration steps of one arm and the calibration file they make."""

    profile: RobotProfile
    resolutions: list[int]
    zero: np.ndarray | None = None
    reference: tuple[np.ndarray, np.ndarray] | None = None
    """(ticks, joint angles rad) at the reference pose."""
    moved_from: np.ndarray | None = None
    moved_to: np.ndarray | None = None
    seen_min: np.ndarray | None = None
    seen_max: np.ndarray | None = None
    margin: int = 8
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def names(self) -> list[str]:
        return self.profile.all_joint_names

    def record_zero(self, ticks: np.ndarray) -> str:
        self.zero = np.asarray(ticks, dtype=np.int64).copy()
        return "zero pose recorded: " + _pairs(self.names, self.zero)

    def record_reference(self, ticks: np.ndarray, angles: np.ndarray) -> str:
        angles = np.asarray(angles, dtype=float)
        if angles.shape != (len(self.names),):
            raise UserError(f"reference pose needs {len(self.names)} joint angles ({', '.join(self.names)}), "
                            f"got {angles.size}")
        self.reference = (np.asarray(ticks, dtype=np.int64).copy(), angles)
        return "reference pose recorded: " + _pairs(self.names, self.reference[0])

    def record_moved(self, before: np.ndarray, after: np.ndarray) -> str:
        """Ticks before and after the user moved every joint a little in its positive direction."""
        self.moved_from, self.moved_to = np.asarray(before, np.int64), np.asarray(after, np.int64)
        return "positive moves recorded: " + _pairs(self.names, self.moved_to - self.moved_from)

    def observe(self, ticks: np.ndarray) -> None:
        """Track the extremes of the range sweep."""
        t = np.asarray(ticks, dtype=np.int64)
        with self._lock:
            self.seen_min = t.copy() if self.seen_min is None else np.minimum(self.seen_min, t)
            self.seen_max = t.copy() if self.seen_max is None else np.maximum(self.seen_max, t)

    def reset_range(self) -> None:
        with self._lock:
            self.seen_min = self.seen_max = None

    # -- results -------------------------------------------------------------------------------------------
    def directions(self, source: DirectionSource, fallback: CalibrationFile | None = None) -> list[int]:
        if self.zero is None:
            raise UserError("record the zero pose first")
        n = len(self.names)
        out: list[int | None] = [None] * n
        if source == "reference":
            if self.reference is None:
                raise UserError("no reference pose recorded (or use directions from the profile or moved joints)")
            ticks, angles = self.reference
            rad_per_tick = 2 * math.pi / np.array(self.resolutions, dtype=float)
            for j in range(n):
                if abs(angles[j]) < 0.05:
                    continue  # joint not moved between the poses: direction not observable here
                measured = (ticks[j] - self.zero[j]) * rad_per_tick[j]
                if abs(abs(measured) - abs(angles[j])) > max(0.15, 0.25 * abs(angles[j])):
                    raise UserError(
                        f"joint {self.names[j]!r} moved {math.degrees(abs(measured)):.0f} deg between the zero and "
                        f"reference poses, but the reference pose says {math.degrees(abs(angles[j])):.0f} deg: "
                        "move the arm exactly to the zero and reference poses (or fix --reference-pose)")
                out[j] = 1 if measured * angles[j] > 0 else -1
        elif source == "moved":
            if self.moved_from is None or self.moved_to is None:
                raise UserError("no positive joint moves recorded")
            delta = self.moved_to - self.moved_from
            for j in range(n):
                if abs(delta[j]) >= 20:
                    out[j] = 1 if delta[j] > 0 else -1
        missing = [j for j in range(n) if out[j] is None]
        if missing and fallback is not None:
            for j in missing:
                out[j] = fallback.joints[self.names[j]].direction
            missing = []
        if missing:
            raise UserError(f"direction of joint {self.names[missing[0]]!r} is unknown (it did not move): move it "
                            "in the reference pose / positive move, or take directions from the profile's calibration")
        return [int(d) for d in out]  # type: ignore[arg-type]

    def build(self, directions: list[int], ranges: RangeSource = "profile") -> CalibrationFile:
        """The calibration file from the recorded steps."""
        if self.zero is None:
            raise UserError("record the zero pose first")
        res = self.resolutions
        if len(set(res)) != 1:
            raise UserError("servos of different resolutions on one arm are not supported")
        cal = make_calibration(self.profile, [int(z) for z in self.zero], directions, res[0], self.margin)
        if ranges == "profile":
            return cal
        if self.seen_min is None or self.seen_max is None:
            raise UserError("no range sweep recorded: move every joint through its full range first")
        joints = {}
        for j, name in enumerate(self.names):
            lo, hi = int(self.seen_min[j]), int(self.seen_max[j])
            if hi - lo < 20 or not lo <= self.zero[j] <= hi:
                raise UserError(f"joint {name!r} swept only ticks {lo}..{hi} (zero at {self.zero[j]}): move it "
                                "through its whole range, past the zero pose, during the sweep")
            joints[name] = JointCalibration(zero=int(self.zero[j]), direction=directions[j], min=lo, max=hi)
        return CalibrationFile(robot=self.profile.name, joints=joints)


def _pairs(names: list[str], values: np.ndarray) -> str:
    return ", ".join(f"{n}={int(v)}" for n, v in zip(names, values))


def profile_calibration(profile: RobotProfile) -> CalibrationFile | None:
    """The profile's current calibration file, if it has one that loads."""
    if not profile.hardware.calibration:
        return None
    path = profile.resolve(profile.hardware.calibration)
    return load_calibration(path, profile) if path.is_file() else None


def default_output(profile: RobotProfile) -> Path:
    """Where a new calibration goes: the profile's ``hardware.calibration`` path, or ``calibration/<robot>.yaml``."""
    if profile.hardware.calibration:
        return profile.resolve(profile.hardware.calibration)
    return Path("calibration") / f"{profile.name}.yaml"


def check_limits(profile: RobotProfile, cal: CalibrationFile, resolutions: list[int]) -> list[str]:
    """Warnings for joints whose recorded range does not cover the profile's limits."""
    from robot_stack.drivers.servo.calibration import TickMap

    lo, hi = TickMap(cal, profile, resolutions).radian_range()
    lower, upper = joint_limits(profile)
    return [f"joint {n!r}: calibrated range {a:+.2f}..{b:+.2f} rad is narrower than the limits {c:+.2f}..{d:+.2f} rad"
            for n, a, b, c, d in zip(profile.all_joint_names, lo, hi, lower, upper) if a > c + 0.05 or b < d - 0.05]

