"""TwinEnv: the twin as a gymnasium.Env, in-process without ROS, for fast training and evaluation.

Same robot contract as the ROS path: observations and actions are defined in
``robot_stack.sim.observation``; one ``step`` is one policy period (``profile.control.policy_rate_hz``)
of control ticks that interpolate linearly from the previous action to the new one (the value at
each tick's start time, reaching the action at the start of the next step, as ``ArmNode`` samples
a JointTrajectory whose waypoints are the actions) and pass each tick's target through the arm core's ``ArmSafety`` (limits and velocity bound), exactly as
``ArmNode`` does for a JointTrajectory on the twin. Reward is the sparse task success; ``info``
carries ``success`` and the dense ``progress``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_stack.arm.safety import ArmSafety
from robot_stack.profile import RobotProfile, load_profile
from robot_stack.sim.cameras import CameraRig
from robot_stack.sim.observation import action_space, make_observation, observation_space
from robot_stack.sim.robot import SimRobot
from robot_stack.sim.tasks import TaskConfig, load_task_config


class TwinEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, robot: str | RobotProfile = "so101", task: str | TaskConfig = "pick_cube", *,
                 cameras: list[str] | None = None, seed: int = 0, render_mode: str | None = None):
        """``cameras``: profile camera names to observe (None: none; ``["front", "wrist"]``: those)."""
        self.profile = load_profile(robot) if isinstance(robot, str) else robot
        self.task_config = load_task_config(task) if isinstance(task, str) else task
        self.sim = SimRobot(self.profile, self.task_config, seed=seed)
        self.safety = ArmSafety(self.profile)
        self.ticks = max(1, round(self.profile.control.rate_hz / self.profile.control.policy_rate_hz))
        self.cameras = list(cameras or [])
        for name in self.cameras:
            self.profile.camera(name)  # one-line error for an unknown camera
        self.render_mode = render_mode
        self._rig: CameraRig | None = None
        self.observation_space = observation_space(self.profile, self.task_config.kind, self.cameras)
        self.action_space = action_space(self.profile)
        self.max_steps = int(round(self.task_config.episode_seconds * self.profile.control.policy_rate_hz))
        self._seed = seed
        self.command = self.sim.read().position
        self.last_action = self.command.copy()
        self.steps = 0

    @property
    def rig(self) -> CameraRig:
        if self._rig is None:
            self._rig = CameraRig(self.sim.model, self.profile, self.sim.camera_ids)
        return self._rig

    def _obs(self) -> dict[str, np.ndarray]:
        reading = self.sim.read()
        pos, quat = self.sim.ee_pose()
        images = {name: self.rig.render_rgb(name, self.sim.data) for name in self.cameras}
        return make_observation(reading.position, reading.velocity, pos, quat, self.sim.object_state(), images)

    def _info(self) -> dict[str, Any]:
        return {"success": self.sim.success(), "progress": self.sim.progress(), "time": self.sim.episode_time,
                "seed": self.sim.seed}

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # noqa: ANN201
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        self.sim.reset(seed)
        self.command = self.sim.read().position
        self.last_action = self.command.copy()
        self.steps = 0
        return self._obs(), self._info()

    def step(self, action: np.ndarray):  # noqa: ANN201
        action = np.asarray(action, dtype=float)
        if action.shape != self.command.shape:
            raise ValueError(f"action must have shape {self.command.shape} (arm joints then gripper), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or inf")
        start = self.last_action
        for k in range(self.ticks):  # tick k holds the target of its start time, as ArmNode does
            target = start + (action - start) * (k / self.ticks)
            self.command = self.safety.limit(target, self.command)
            self.sim.write(self.command)
            self.sim.step()
        self.last_action = action
        self.steps += 1
        info = self._info()
        return self._obs(), float(info["success"]), bool(info["success"]), self.steps >= self.max_steps, info

    def render(self):  # noqa: ANN201
        name = self.cameras[0] if self.cameras else self.profile.camera_names[0]
        return self.rig.render_rgb(name, self.sim.data)

    def close(self) -> None:
        if self._rig is not None:
            self._rig.close()
            self._rig = None
