"""Sampling the contract's streams onto a fixed tick grid: the recorder's alignment rule, shared.

``recorder_node`` feeds these from live subscriptions (``now`` = ROS time of arrival) and
``robot-stack data import --format rosbag2`` from a bag (``now`` = the bag's log time), so a bag
imports exactly as recording it live would have.

Rule, per tick ``t``: every stream contributes its newest sample with capture stamp
(``header.stamp``) <= ``t`` (nearest earlier); a sample older than the stream's tolerance is still
used but reported as *late*. ``action`` follows :class:`CommandTracker`. A tick at which
``joint_states`` or a camera has no sample yet yields no step.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from robot_stack import convert
from robot_stack.stamped import StampedStream
from robot_stack.profile import RobotProfile


def history(seconds: float, rate_hz: float) -> StampedStream:
    """``seconds`` of a stream at ``rate_hz`` (half as much again, for bursts)."""
    return StampedStream(max(8, int(seconds * rate_hz * 1.5)))


class CommandTracker:
    """The commanded joint target at any tick time.

    Events: a ``commands`` message (arm joints) or gripper ``commands`` message at its arrival time;
    each point of a ``joint_trajectory`` at its due time (the first point counts from the
    trajectory's arrival; a new trajectory cancels the not-yet-due points of the previous one, as
    joint_trajectory_controller does). Per joint, the value of the latest event at or before ``t``.
    """

    def __init__(self, n: int):
        self.n = n
        self.current = np.full(n, np.nan)
        self.updated = np.full(n, -np.inf)  # time of the event that set each joint's current value
        self.pending: list[tuple[float, int, np.ndarray, bool]] = []  # (time, seq, values, from_trajectory)
        self.lock = threading.Lock()
        self._seq = 0

    def add(self, t: float, values: np.ndarray, trajectory: bool = False) -> None:
        with self.lock:
            self._seq += 1
            self.pending.append((t, self._seq, values, trajectory))
            self.pending.sort(key=lambda e: (e[0], e[1]))

    def add_trajectory(self, received: float, due: np.ndarray, points: np.ndarray) -> None:
        with self.lock:  # a new trajectory replaces the remaining points of the previous one
            self.pending = [e for e in self.pending if not (e[3] and e[0] >= received)]
        for k, (t, q) in enumerate(zip(due, points)):
            self.add(received if k == 0 else max(float(t), received), q, trajectory=True)

    def at(self, t: float) -> np.ndarray:
        with self.lock:
            while self.pending and self.pending[0][0] <= t:
                when, _, values, _ = self.pending.pop(0)
                mask = ~np.isnan(values)
                self.current[mask] = values[mask]
                self.updated[mask] = when
            return self.current.copy()

    def begin(self, t: float, keep_s: float) -> None:
        """An episode starts at ``t``: a command older than ``keep_s`` (the robot's command watchdog; a
        twin reset drops commands too) is no longer in effect, so it does not carry into the episode."""
        self.at(t)
        with self.lock:
            stale = self.updated < t - keep_s
            self.current[stale] = np.nan


class Streams:
    """The inputs of one recording: a history per stream, filled from contract messages.

    ``add_*`` methods parse one message (raising ``convert.MessageError`` for a bad one) and return
    its capture stamp; command-like streams are stamped with ``now`` (their arrival time).
    ``slack_s`` lets a sample stamped up to that much after a tick count as at the tick (a bag
    written at tick times and read back loses sub-microsecond digits of float seconds).
    """

    def __init__(self, profile: RobotProfile, tolerance: dict[str, float], keep_s: float, *,
                 task_kind: str | None = None, slack_s: float = 0.0, rates: dict[str, float] | None = None):
        self.profile = profile
        self.names = profile.all_joint_names
        self.n = len(self.names)
        self.n_arm = len(profile.joint_names)
        self.tol = dict(tolerance)
        self.task_kind = task_kind
        self.slack = slack_s
        rate = (rates or {}).get
        control = profile.control.rate_hz * 2
        self.joints = history(keep_s, rate("joint_states", control))
        self.ee = history(keep_s, rate("ee_pose", control))
        self.objects = history(keep_s, rate("object_poses", control))
        self.frames = {c.name: history(keep_s, rate(c.name, c.fps * 2)) for c in profile.cameras}
        self.intervention = history(keep_s, rate("intervention", 100.0))
        self.commands = CommandTracker(self.n)

    # -- inputs --------------------------------------------------------------------------------
    def add_joint_states(self, msg: Any) -> float:
        pos, vel, _ = convert.joint_state_arrays(msg, self.names)
        if not np.all(np.isfinite(pos)):
            raise convert.MessageError("positions contain NaN or inf")
        stamp = convert.to_sec(msg.header.stamp)
        self.joints.add(stamp, (pos.astype(np.float32), vel.astype(np.float32)))
        return stamp

    def add_ee_pose(self, msg: Any) -> float:
        pos, quat = convert.pose_arrays(msg)
        stamp = convert.to_sec(msg.header.stamp)
        self.ee.add(stamp, np.concatenate([pos, quat]).astype(np.float32))
        return stamp

    def add_object_poses(self, msg: Any) -> float:
        from robot_stack.tasks import object_state_from_poses

        rows = np.array([[p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y,
                          p.orientation.z, p.orientation.w] for p in msg.poses]).reshape(-1, 7)
        try:
            state = object_state_from_poses(self.task_kind, rows)
        except ValueError as err:
            raise convert.MessageError(str(err)) from None
        stamp = convert.to_sec(msg.header.stamp)
        self.objects.add(stamp, state.astype(np.float32))
        return stamp

    def add_image(self, name: str, msg: Any) -> float:
        cam = self.profile.camera(name)
        if msg.width != cam.width or msg.height != cam.height or msg.encoding not in ("rgb8", "bgr8", "mono8"):
            raise convert.MessageError(
                f"{name} image {msg.width}x{msg.height} {msg.encoding}: profile says {cam.width}x{cam.height} rgb8/bgr8/mono8")
        stamp = convert.to_sec(msg.header.stamp)
        self.frames[name].add(stamp, msg)
        return stamp

    def add_intervention(self, now: float, msg: Any) -> None:
        self.intervention.add(now, bool(msg.data))

    def add_trajectory(self, now: float, msg: Any) -> None:
        times, points = convert.trajectory_arrays(msg, self.names)
        start = convert.to_sec(msg.header.stamp) or now
        self.commands.add_trajectory(now, start + times, points)

    def add_commands(self, now: float, msg: Any) -> None:
        values = convert.command_array(msg.data, self.n_arm)
        self.commands.add(now, np.concatenate([values, np.full(self.n - values.size, np.nan)]))

    def add_gripper(self, now: float, msg: Any) -> None:
        values = convert.command_array(msg.data, 1)
        full = np.full(self.n, np.nan)
        full[-1] = values[0]
        self.commands.add(now, full)

    def missing(self) -> list[str]:
        """Streams an episode cannot start without that have no sample yet."""
        return [n for n, h in (("joint_states", self.joints), *self.frames.items()) if not h]

    # -- the tick ------------------------------------------------------------------------------
    def sample(self, t: float, with_ee: bool, object_dim: int | None) -> tuple[dict[str, Any] | None, list[str], bool]:
        """The step at tick ``t``: (step or None, names of late streams, whether ``action`` fell back).

        Images are returned as the messages themselves (``image_array`` converts them)."""
        at = t + self.slack
        joint = self.joints.at(at)
        frames = {name: h.at(at) for name, h in self.frames.items()}
        action = self.commands.at(at)
        if joint is None or any(f is None for f in frames.values()):
            return None, [], False
        late = []
        stamp_j, (pos, vel) = joint
        if t - stamp_j > self.tol["joint_states"]:
            late.append("joint_states")
        nan = np.isnan(action)
        if nan.any():
            action[nan] = pos[nan]  # never commanded: the measured position stands in
        step: dict[str, Any] = {
            "timestamp": np.float64(t),
            "joint_pos": pos,
            "joint_vel": np.nan_to_num(vel, nan=0.0),
            "action": action.astype(np.float32),
        }
        intervention = self.intervention.at(at)
        step["intervention"] = np.bool_(intervention[1] if intervention else False)
        if with_ee:
            pose = self.ee.at(at)
            if pose is None or t - pose[0] > self.tol["ee_pose"]:
                late.append("ee_pose")
            step["ee_pose"] = pose[1] if pose is not None else np.full(7, np.nan, np.float32)
        if object_dim is not None:
            state = self.objects.at(at)
            if state is None or t - state[0] > self.tol["object_poses"]:
                late.append("object_poses")
            step["object_state"] = state[1] if state is not None else np.full(object_dim, np.nan, np.float32)
        for name, (stamp, msg) in frames.items():
            if t - stamp > self.tol[name]:
                late.append(name)
            step[f"{name}_image"] = msg
            step[f"{name}_stamp"] = np.float64(stamp)
        return step, late, bool(nan.any())


image_array = convert.image_rgb
"""An image message of a step -> (H, W, 3) uint8 RGB."""


CLOCK_JUMP_S = 10.0
"""A gap between two frames of one camera longer than this is a clock jump (a restarted source, sim
time against wall time), not frames the camera skipped."""


def missed_frames(gap: float, fps: float) -> int:
    """Frames a camera at ``fps`` skipped between two captures ``gap`` seconds apart (0 across a clock jump)."""
    return max(0, int(round(gap * fps)) - 1) if 1.5 / fps < gap <= CLOCK_JUMP_S else 0


def task_kind(task: str) -> str | None:
    """The task kind (reach, pick_cube, push) when ``task`` names a known task, else None."""
    if not task:
        return None
    from robot_stack.errors import UserError
    from robot_stack.tasks import load_task_config

    try:
        return load_task_config(task).kind
    except UserError:
        return None


def tolerances(profile: RobotProfile, tolerance_s: float = 0.0) -> dict[str, float]:
    """Per-stream tolerance: ``tolerance_s``, or 1.5 nominal periods of each stream when 0."""
    period = 1.5 / profile.control.rate_hz
    tol = {"joint_states": tolerance_s or period, "ee_pose": tolerance_s or period, "object_poses": tolerance_s or period}
    tol.update({cam.name: tolerance_s or 1.5 / cam.fps for cam in profile.cameras})
    return tol
