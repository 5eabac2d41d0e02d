"""TwinRuntime: the twin on sim time, in one process: ``SimRobot`` physics behind the arm's ``ArmCore``.

The ROS twin (``twin_node``) wraps exactly this; the in-process evaluation, ``TwinEnv`` (and through
it HIL training) and ``data replay`` drive it directly, so every path runs the same command
execution, safety and timing. One control period, as the twin node runs it::

    runtime.advance()             # ArmCore.update(now) -> SimRobot.write; physics steps one period
    sensors = runtime.sense()     # ArmCore.read(now), and the camera frames due now

``sense`` returns what the robot publishes at that instant: the joint reading, the end-effector pose
by forward kinematics of the measured joints, the task's object poses (simulator ground truth:
privileged, for scoring and ``--privileged`` policies only) and which cameras capture a frame now
(each at its own fps, on sim time, phase restarted at every reset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_stack.arm.backend import JointReading
from robot_stack.arm.core import ArmCore, Log
from robot_stack.arm.kinematics import Kinematics
from robot_stack.profile import RobotProfile
from robot_stack.sim.robot import SimRobot
from robot_stack.tasks import TaskConfig


@dataclass
class Sensors:
    """What the twin publishes at ``stamp`` (sim time)."""

    stamp: float
    reading: JointReading
    ee_pose: tuple[np.ndarray, np.ndarray] | None
    object_poses: np.ndarray | None
    """(k, 7) rows x, y, z, qx, qy, qz, qw of the task's objects (ground truth)."""
    cameras: list[str]
    """Cameras that capture a frame now."""
    snapshot: dict[str, np.ndarray] | None
    """The scene state those frames show (``SimRobot.snapshot``)."""


@dataclass
class TaskState:
    """The twin's ``task_success`` answer, as text both ways (the twin writes it, an evaluator reads it)."""

    success: bool
    progress: float
    time: float
    """Episode time (s)."""
    first_success: float | None
    """Episode time of the first control period the task succeeded (None: not yet)."""
    seed: int

    @classmethod
    def of(cls, sim: SimRobot) -> TaskState:
        return cls(sim.success(), sim.progress(), sim.episode_time, sim.success_time, sim.seed)

    def message(self) -> str:
        first = "none" if self.first_success is None else f"{self.first_success:.6f}"
        return (f"success={str(self.success).lower()} progress={self.progress:.3f} time={self.time:.6f} "
                f"first_success={first} seed={self.seed}")

    @classmethod
    def parse(cls, text: str) -> TaskState:
        fields = dict(item.split("=", 1) for item in text.split() if "=" in item)
        first = fields.get("first_success", "none")
        return cls(fields.get("success") == "true", float(fields.get("progress", 0.0)), float(fields.get("time", 0.0)),
                   None if first == "none" else float(first), int(fields.get("seed", 0)))


class CameraSchedule:
    """Which cameras are due at a sim time, each at its profile fps; the phase restarts with every episode."""

    def __init__(self, profile: RobotProfile, names: list[str]):
        self.periods = {name: 1.0 / profile.camera(name).fps for name in names}
        self.next = {name: 0.0 for name in names}

    def restart(self, t: float) -> None:
        for name in self.next:
            self.next[name] = t

    def due(self, t: float) -> list[str]:
        due = [name for name, when in self.next.items() if t + 1e-9 >= when]
        for name in due:
            period = self.periods[name]
            self.next[name] = max(self.next[name] + period, t + 0.5 * period)
        return due


class TwinRuntime:
    def __init__(self, profile: RobotProfile, task: TaskConfig | str | None = None, *, seed: int = 0,
                 cameras: list[str] | None = None, time_offset: float = 0.0, log: Log | None = None):
        """``cameras``: profile cameras to schedule (default: all of the profile's)."""
        self.profile = profile
        self.sim = SimRobot(profile, task, seed=seed, time_offset=time_offset)
        self.core = ArmCore(profile, self.sim, Kinematics(profile), log=log)
        names = profile.camera_names if cameras is None else list(cameras)
        for name in names:
            profile.camera(name)  # one-line error for an unknown camera
        self.schedule = CameraSchedule(profile, names)

    @property
    def now(self) -> float:
        return self.sim.now()

    @property
    def task(self):
        return self.sim.task

    def reset(self, seed: int | None = None) -> None:
        """A new episode: scene from ``seed``, commands dropped, e-stop released, camera phase restarted."""
        self.sim.reset(seed)
        self.core.read(self.now)
        self.core.set_estop(False)
        self.core.hold_measured()
        self.core.stale = False
        self.schedule.restart(self.sim.elapsed)

    def advance(self) -> None:
        """One control period: the core writes its target for now, then physics steps."""
        self.core.update(self.now)
        self.sim.step()

    def sense(self) -> Sensors:
        now = self.now
        reading = self.core.read(now)
        cameras = self.schedule.due(self.sim.elapsed)
        poses = self.sim.task.object_poses(self.sim.data) if self.sim.task is not None else None
        return Sensors(now, reading, self.core.ee_pose(reading.position), poses, cameras,
                       self.sim.snapshot() if cameras else None)

    @property
    def episode_time(self) -> float:
        return self.sim.episode_time

    def close(self) -> None:
        self.sim.close()
