"""TwinEnv: the twin as a gymnasium.Env, in-process without ROS, for fast training and evaluation.

Same robot, same code as the ROS path: a ``TwinRuntime`` (``SimRobot`` physics behind the arm's
``ArmCore``). One ``step`` is one policy period (``profile.control.policy_rate_hz``): the action, an
absolute joint target, is commanded as a one-point joint trajectory reached one period later (what
``hil_actor`` publishes), and the core interpolates it, bounds it by ``ArmSafety`` and writes it at
the control rate, exactly as on hardware. Observations are what the robot publishes
(``robot_stack.sim.observation``), cameras rendered at the end of the step. Reward is the sparse task
success; ``info`` carries ``success`` (latched at the first control period it held), the dense
``progress`` and ``success_time``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_stack.profile import RobotProfile, load_profile
from robot_stack.sim.cameras import CameraRig
from robot_stack.sim.observation import action_space, make_observation, observation_space
from robot_stack.sim.runtime import TwinRuntime
from robot_stack.tasks import TaskConfig, load_task_config


class TwinEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, robot: str | RobotProfile = "so101", task: str | TaskConfig = "pick_cube", *,
                 cameras: list[str] | None = None, seed: int = 0, render_mode: str | None = None):
        """``cameras``: profile camera names to observe (None: none; ``["front", "wrist"]``: those)."""
        self.profile = load_profile(robot) if isinstance(robot, str) else robot
        self.task_config = load_task_config(task) if isinstance(task, str) else task
        self.cameras = list(cameras or [])
        self.runtime = TwinRuntime(self.profile, self.task_config, seed=seed, cameras=self.cameras)
        self.sim, self.core = self.runtime.sim, self.runtime.core
        self.ticks = max(1, round(self.profile.control.rate_hz / self.profile.control.policy_rate_hz))
        self.period = self.ticks * self.profile.control_period
        self.render_mode = render_mode
        self._rig: CameraRig | None = None
        self.observation_space = observation_space(self.profile, self.task_config.kind, self.cameras)
        self.action_space = action_space(self.profile)
        self.max_steps = int(round(self.task_config.episode_seconds * self.profile.control.policy_rate_hz))
        self.steps = 0
        self.last_action = self.command.copy()
        """The previous step's action (the joint target before this step)."""

    @property
    def safety(self):  # the core's ArmSafety
        return self.core.safety

    @property
    def command(self) -> np.ndarray:
        """The last joint target the core wrote."""
        return self.core.command

    @property
    def rig(self) -> CameraRig:
        if self._rig is None:
            self._rig = CameraRig(self.sim.model, self.profile, self.sim.camera_ids)
        return self._rig

    def _obs(self) -> dict[str, np.ndarray]:
        images = {name: self.rig.render_rgb(name, self.sim.data) for name in self.cameras}
        return make_observation(self.runtime.sense(), self.task_config.kind, images)

    def _info(self) -> dict[str, Any]:
        return {"success": self.sim.success_time is not None, "progress": self.sim.progress(),
                "time": self.sim.episode_time, "success_time": self.sim.success_time, "seed": self.sim.seed}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        self.runtime.reset(seed)
        self.last_action = self.command.copy()
        self.steps = 0
        return self._obs(), self._info()

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=float)
        if action.shape != self.command.shape:
            raise ValueError(f"action must have shape {self.command.shape} (arm joints then gripper), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or inf")
        now = self.runtime.now
        self.core.trajectory(now, np.array([self.period]), action[None], now)
        for _ in range(self.ticks):
            self.runtime.advance()
            self.core.read(self.runtime.now)
        self.last_action = action
        self.steps += 1
        info = self._info()
        return self._obs(), float(info["success"]), bool(info["success"]), self.steps >= self.max_steps, info

    def render(self):
        name = self.cameras[0] if self.cameras else self.profile.camera_names[0]
        return self.rig.render_rgb(name, self.sim.data)

    def close(self) -> None:
        if self._rig is not None:
            self._rig.close()
            self._rig = None
