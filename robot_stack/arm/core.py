"""ArmCore: the arm's runtime core, one class for the twin and every hardware backend.

It owns what happens between a command and the motors, and nothing else: command sources,
interpolation at the control rate, ``ArmSafety``, the watchdog and the e-stop. It owns no clock and
no transport (in the spirit of ros2_control's controller manager: the backend only reads and writes).
Whoever drives it passes the time, every control period::

    reading = core.read(now)     # backend.read(); publish or observe it
    core.update(now)             # command -> safe target -> backend.write()

``ArmNode`` drives it on a ROS node's clock (wall time on hardware); the twin and the in-process
runtime drive it on sim time. Commands arrive as validated arrays (``robot_stack.convert`` turns
messages into them); bad values raise ``CommandError`` and never move the arm.

Trajectories follow ros2_control's joint_trajectory_controller: one that starts in the future
(``start > now``) replaces the running command only at its start time, so a command published ahead
(a policy's chunk stamped with the end of its inference) takes over exactly then.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_stack.arm.backend import ArmBackend, JointReading
from robot_stack.arm.estop_store import EStopStore
from robot_stack.arm.commands import PoseSource, PositionSource, TrajectorySource, TwistSource
from robot_stack.arm.kinematics import IKError, Kinematics
from robot_stack.arm.safety import ArmSafety
from robot_stack.profile import RobotProfile

VERSION = "4"
"""Runtime-core behaviour version, recorded in sim sign-offs (bump when command execution changes)."""

FLOOR_TOLERANCE = 1e-6
"""m: outside a limit (an arm switched on below the floor, say), a step may move no further out (but this much,
for rounding): it may move along or away from the limit."""

MAX_SAG = 0.05
"""m: the most by which the goals are kept above the floor for an arm that sits below them (gravity sag, lag)."""
FLOOR_SPEED = 0.3
"""m/s: the fastest the end effector's goal may approach the floor. The floor is checked on the goals; an arm
that follows them late (fast motion, weak servos) overshoots by its speed times its lag, so the approach is
capped well above what demonstrations use (the scripted experts descend at most 0.17 m/s)."""

LOOKAHEAD = 0.08
"""s: the floor and the workspace box are kept by where the measured arm will be this much later at its present
speed: a servo that follows its goal late keeps going after the goal stops (12 dives to goals under the floor,
the emulator's plant: 7 mm below the floor at the median without it; with it and the lift, none more than 0.1 mm)."""
LIFT_GAIN = 0.1
"""Per control period, a measured arm below the floor has its goal raised by this share of the depth (an
integral action: a higher gain against a servo's lag oscillates)."""

WORKSPACE_MARGIN = 0.005
"""m: Cartesian motions stop this far inside the workspace box."""
APPROACH_RATE = 0.15
"""Per control period, the end effector may close at most this share of its distance to the floor (and, in a
Cartesian motion, to the workspace box): an exponential approach (at 100 Hz, 15 x the distance per second,
0.19 m/s at 1.3 cm) that brakes the arm before the limit, not at it. Scripted demonstrations descend at
most 0.13 m/s below 4 cm."""

Log = Callable[[str, str], None]
"""``log(level, text)``; level is 'info', 'warning' or 'error'."""


class CommandError(ValueError):
    """A command that cannot be executed (stale, wrong frame, no kinematic model, e-stop engaged...)."""


@dataclass
class _PendingTrajectory:
    start: float
    times: np.ndarray
    positions: np.ndarray


def _locked(method):
    """Run under the core's lock: the e-stop is served on a thread of its own."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return run


def _default_log() -> Log:
    import logging

    from robot_stack.node_log import throttled_log

    return throttled_log(logging.getLogger("robot_stack.arm"))


class ArmCore:
    def __init__(self, profile: RobotProfile, backend: ArmBackend, kinematics: Kinematics | None = None,
                 log: Log | None = None, estop_store: EStopStore | None = None):
        """``estop_store``: where the e-stop latch persists (hardware); a persisted stop is engaged at start."""
        self.profile, self.backend, self.kinematics = profile, backend, kinematics
        self.log = log or _default_log()
        self.estop_store = estop_store
        self.lock = threading.RLock()
        """Held by every call that touches the backend or the command state."""
        self.safety = ArmSafety(profile)
        self.n_arm = len(profile.joints)
        self.gripper_index = self.n_arm if profile.gripper else None
        self.reading: JointReading = backend.read()
        self.command = self.reading.position.copy()
        """The last target written to the backend."""
        self.hold_target = self.command.copy()
        self.source: object | None = None
        self.pending: _PendingTrajectory | None = None
        self.gripper_target: float | None = None
        self.last_streamed: float | None = None
        self.stale = False
        torque = getattr(backend, "torque_enabled", None)
        self.torque_on = bool(torque()) if torque is not None else True
        """Whether the motors are energised (read back from the backend at start)."""
        self.rejected = 0
        self._fk_memo: tuple[np.ndarray, np.ndarray] | None = None
        persisted = estop_store.load() if estop_store is not None else None
        if persisted is not None:
            self.safety.set_estop(True, f"persisted from before a restart: {persisted}")
            self.log("error", f"E-STOP engaged at start ({persisted}); motors "
                              f"{'holding' if self.torque_on else 'relaxed'}; release with the estop/set service")

    # -- the control period ---------------------------------------------------------------------
    @_locked
    def read(self, now: float) -> JointReading:
        """Measure the joints (call first in every control period)."""
        self.reading = self.backend.read()
        return self.reading

    def ee_pose(self, q: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Forward kinematics (position, quaternion xyzw, base frame) of ``q`` (default: the measured joints)."""
        if self.kinematics is None:
            return None
        q = self.reading.position if q is None else q
        return self.kinematics.fk(q[: self.n_arm])

    @_locked
    def update(self, now: float) -> None:
        """Turn the active command into a safe target for ``now`` and write it to the backend."""
        if self.safety.estopped:
            if self.torque_on:  # hold; relaxed motors stay relaxed until the release
                self._write(self.hold_target)
            return
        if self.pending is not None and now + 1e-9 >= self.pending.start:
            pending, self.pending = self.pending, None
            self._start_trajectory(pending, now)
        if self.source is not None and self.source.streamed and self.safety.is_stale(self.last_streamed, now):
            self._go_stale()
        if self.stale and self.profile.control.on_stale == "torque_off":
            return
        try:
            target = self.hold_target if self.source is None else self.source.target(now, self.command)
        except IKError as err:
            self.safety.stats.ik_resets += 1
            self.log("error", f"Cartesian command dropped: {err}; holding")
            self.hold()
            target = self.hold_target
        target = np.where(np.isnan(target), self.command, target)
        if self.gripper_index is not None and self.gripper_target is not None:
            target[self.gripper_index] = self.gripper_target
        self._write(target)

    def _write(self, target: np.ndarray) -> None:
        try:
            safe = self.safety.limit(target, self.command)
        except ValueError as err:
            self.log("error", f"unsafe target not sent ({err}); holding")
            self.hold()
            return
        safe = self._on_path(safe)
        if not self.torque_on:
            self.backend.set_torque(True)
            self.torque_on = True
        self.backend.write(safe)
        self.command = safe

    def _ee_at(self, q: np.ndarray) -> np.ndarray:
        """End-effector position of joint targets ``q`` (the last one remembered: each tick asks for the
        previous tick's target again)."""
        if self._fk_memo is not None and np.array_equal(self._fk_memo[0], q):
            return self._fk_memo[1]
        position = self.kinematics.fk(q[: self.n_arm])[0]
        self._fk_memo = (q.copy(), position)
        return position

    def _on_path(self, safe: np.ndarray) -> np.ndarray:
        """The workspace on the path (forward kinematics of every step): the end effector slows down towards
        the floor (any command) and, in a Cartesian motion, towards the workspace box (stopping
        ``WORKSPACE_MARGIN`` inside it): per control period it may close at most ``APPROACH_RATE`` of its
        distance to them (and approach the floor at most ``FLOOR_SPEED``), and never move further out. The step
        is shortened to the longest part that keeps this. While a command runs, a measured arm below the floor
        has its goal raised (within the velocity limits) until it is back."""
        ws = self.profile.workspace
        cartesian = isinstance(self.source, (PoseSource, TwistSource))
        if self.kinematics is None or ws is None or (ws.floor is None and not cartesian):
            return safe
        limits: list[Callable[[np.ndarray], float]] = []  # signed distances, > 0 on the allowed side
        q = self.reading.position[: self.n_arm]
        qd = np.nan_to_num(self.reading.velocity[: self.n_arm], nan=0.0, posinf=0.0, neginf=0.0)  # a bad reading
        velocity = self.kinematics.jacobian(q) @ qd  # of the measured end effector
        if ws.floor is not None:
            # the floor is kept by the measured arm, not only by its goals: an arm that sits below its goal
            # (gravity sag, lag) or is falling towards it has its goals kept that much higher
            measured = self.kinematics.fk(q)[0][2] + LOOKAHEAD * min(float(velocity[2]), 0.0)
            sag = float(np.clip(self._ee_at(self.command)[2] - measured, 0.0, MAX_SAG))
            limits.append(lambda p: float(p[2] - ws.floor - sag))
        if cartesian:  # the box shrunk by how far the arm coasts
            margin = WORKSPACE_MARGIN + LOOKAHEAD * float(np.linalg.norm(velocity))
            limits.append(lambda p: self.safety.inside_workspace(p, margin))
        if not np.array_equal(safe, self.command):
            safe = self._shortened(safe, limits)
        if ws.floor is not None and self.source is not None and not self.safety.estopped:
            goal = self._ee_at(safe)
            below = -limits[0](goal)
            # a goal above the floor whose arm sits below it (an arm switched on below the floor, with its goal
            # there too, may move along the floor but is not raised): raise it by a share of the depth
            if below > 0 and goal[2] >= ws.floor:
                jz = self.kinematics.jacobian(safe[: self.n_arm])[2]
                lifted = safe.copy()
                lifted[: self.n_arm] += jz * (LIFT_GAIN * below) / (jz @ jz + 1e-6)
                safe = self.safety.limit(lifted, self.command)
                self.safety.stats.lifted_from_floor += 1
        return safe

    def _shortened(self, safe: np.ndarray, limits: list[Callable[[np.ndarray], float]]) -> np.ndarray:
        """The longest part of the step from the goal to ``safe`` that closes at most ``APPROACH_RATE`` of each
        limit's distance (and the floor's, ``limits[0]`` where the profile has one, at most ``FLOOR_SPEED``)."""
        here = self._ee_at(self.command)  # remembered: no second forward kinematics
        distances = [f(here) for f in limits]
        bounds = [(1.0 - APPROACH_RATE) * d if d > 0 else d - FLOOR_TOLERANCE for d in distances]
        if self.profile.workspace.floor is not None and bounds[0] > 0:
            bounds[0] = max(bounds[0], distances[0] - FLOOR_SPEED * self.profile.control_period)

        def fits(point: np.ndarray) -> bool:
            return all(f(point) >= b for f, b in zip(limits, bounds))

        if fits(self._ee_at(safe)):
            return safe
        lo, hi = 0.0, 1.0
        for _ in range(8):
            mid = (lo + hi) / 2
            point = self.kinematics.fk((self.command + mid * (safe - self.command))[: self.n_arm])[0]
            lo, hi = (mid, hi) if fits(point) else (lo, mid)
        self.safety.stats.slowed_at_workspace += 1
        return self.command + lo * (safe - self.command)

    def _go_stale(self) -> None:
        self.safety.stats.stale_events += 1
        relax = self.profile.control.on_stale == "torque_off"
        self.log("warning", f"commands stale (> {self.profile.control.watchdog_periods} control periods): "
                            + ("torque off" if relax else "holding position"))
        self.hold()
        self.stale = True
        if relax:
            self.backend.set_torque(False)
            self.torque_on = False

    @_locked
    def hold(self) -> None:
        """Drop every command and hold the last target (the goal never jumps)."""
        self.source = self.pending = None
        self.gripper_target = None
        self.last_streamed = None
        self.hold_target = self.command.copy()

    @_locked
    def hold_measured(self) -> None:
        """Drop every command and hold where the arm is now (a stop, or a scene reset)."""
        self.hold()
        self.hold_target = self.reading.position.copy()
        self.command = self.hold_target.copy()

    # -- commands -------------------------------------------------------------------------------
    def _activate(self, source: object, now: float, streamed: bool) -> None:
        if self.safety.estopped:
            raise CommandError("e-stop engaged (release with the estop/set service)")
        self.source = source
        self.pending = None
        self.stale = False
        self.last_streamed = now if streamed else None

    @_locked
    def trajectory(self, start: float, times: np.ndarray, positions: np.ndarray, now: float) -> None:
        """Joint trajectory: ``positions`` (N, all joints; NaN = joint omitted) reached ``times`` s after ``start``."""
        if start + times[-1] < now - self.profile.control_period:
            raise CommandError("it ended before it arrived (stale stamp)")
        if self.safety.estopped:
            raise CommandError("e-stop engaged (release with the estop/set service)")
        pending = _PendingTrajectory(start, np.asarray(times, float), np.asarray(positions, float))
        if start > now + 1e-9:
            self.pending = pending  # replaces the running command at its start time
            return
        self._start_trajectory(pending, now)

    def _desired(self, t: float) -> np.ndarray:
        """Where the running command wants the joints at ``t`` (the start of a trajectory that replaces it)."""
        if isinstance(self.source, (TrajectorySource, PositionSource)):
            desired = self.source.target(t, self.command)
            return np.where(np.isnan(desired), self.command, desired)
        return self.command

    def _start_trajectory(self, p: _PendingTrajectory, now: float) -> None:
        if self.gripper_index is not None and not np.isnan(p.positions[:, self.gripper_index]).all():
            self.gripper_target = None  # the trajectory drives the gripper
        self.source = TrajectorySource.start(p.start, p.times, p.positions, self._desired(min(p.start, now)))
        self.stale = False
        self.last_streamed = None

    @_locked
    def positions(self, q_arm: np.ndarray, now: float) -> None:
        """Streamed absolute arm joint positions (forward command; watched by the watchdog)."""
        full = np.full(len(self.command), np.nan)
        full[: self.n_arm] = q_arm
        self._activate(PositionSource(full), now, streamed=True)

    @_locked
    def gripper(self, value: float) -> None:
        if self.safety.estopped:
            raise CommandError("e-stop engaged (release with the estop/set service)")
        self.gripper_target = float(value)

    def _pose_source(self, position: np.ndarray, quat: np.ndarray | None) -> PoseSource:
        if self.kinematics is None:
            raise CommandError("this robot profile has no kinematic model (sim.mjcf)")
        return PoseSource(self.kinematics, self.safety.clamp_workspace(position), quat, self.n_arm,
                          self.profile.control_period)

    @_locked
    def pose(self, position: np.ndarray, quat: np.ndarray | None, now: float) -> None:
        """Cartesian setpoint (base frame), reached by differential IK."""
        self._activate(self._pose_source(position, quat), now, streamed=False)

    @_locked
    def twist(self, linear: np.ndarray, angular: np.ndarray, now: float) -> None:
        """Streamed Cartesian velocity (base frame): the pose target moves with it every tick."""
        if isinstance(self.source, TwistSource) and not self.stale:
            self.source.linear, self.source.angular = linear, angular
            self._activate(self.source, now, streamed=True)
            return
        if self.kinematics is None:
            raise CommandError("this robot profile has no kinematic model (sim.mjcf)")
        position, quat = self.kinematics.fk(self.command[: self.n_arm])
        pose = self._pose_source(position, quat)
        self._activate(TwistSource(self.kinematics, pose, linear, angular, self.safety.clamp_workspace), now,
                       streamed=True)

    # -- e-stop ---------------------------------------------------------------------------------
    @_locked
    def set_estop(self, on: bool, reason: str = "") -> bool:
        """Engage or release the latched e-stop; True when the state changed."""
        if on == self.safety.estopped:
            return False
        if not on and self.estop_store is not None:
            self.estop_store.save(False)  # durable before the release acts
        self.safety.set_estop(on, reason)
        self.hold_measured()
        if on and self.torque_on:
            self._write(self.hold_target)  # the arm stops now, not at the next control period,
        if on and self.estop_store is not None:
            self.estop_store.save(True, reason)  # and the latch is durable (fsync) before the stop is reported
        self.log("error" if on else "info", f"E-STOP engaged ({reason}): holding position" if on else "e-stop released")
        return True

    def diagnostics(self) -> dict[str, float | int]:
        values: dict[str, float | int] = dict(vars(self.safety.stats))
        values["rejected_commands"] = self.rejected
        return values
