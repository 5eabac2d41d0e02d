"""SimRobot: the MuJoCo twin's physics core (no ROS), an ``ArmBackend`` like every hardware arm.

It owns the scene (robot + task objects + cameras), steps physics one control period at a time,
takes position targets in profile order (arm joints then gripper), reads ``JointReading``s stamped
with sim time, resets deterministically from a seed (same seed -> same initial state, including
domain randomisation) and reports task success and progress.
"""

from __future__ import annotations

from collections import deque

import mujoco
import numpy as np

from robot_stack.arm.backend import JointReading
from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile
from robot_stack.sim.actuation import JointActuation
from robot_stack.sim.scene import build_scene
from robot_stack.sim.tasks import Task, TaskConfig, make_task

VISUAL_STREAM = 7
"""Second entropy word of the random stream visual randomisation draws from (the first is the reset seed)."""


class SimRobot:
    """Physics of one robot in one task scene; implements ``robot_stack.arm.backend.ArmBackend``."""

    def __init__(self, profile: RobotProfile, task: Task | TaskConfig | str | None = None, *, seed: int = 0,
                 time_offset: float = 0.0):
        if profile.sim is None:
            raise UserError(f"robot profile {profile.name!r} has no 'sim' section (needed by the twin)")
        self.profile = profile
        self.task: Task | None = make_task(task, profile) if isinstance(task, (str, TaskConfig)) else task
        scene = build_scene(profile, self.task)
        self.model, self.path, self.camera_ids = scene.model, scene.path, scene.cameras
        self.data = mujoco.MjData(self.model)
        if self.task is not None:
            self.task.bind(self.model)
        self.actuation = JointActuation(self.model, profile.all_joint_names, str(self.path))
        self.qpos_index, self.dof_index = self.actuation.qpos_index, self.actuation.dof_index
        self.substeps = max(1, round(profile.control_period / self.model.opt.timestep))
        self.dt = self.substeps * self.model.opt.timestep
        self.ee_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, profile.sim.ee_site)
        self.home = self._home()
        self.time_offset = time_offset
        self.elapsed_ns = 0
        """Sim time since construction, integer nanoseconds; never goes back (resets included)."""
        self.dt_ns = round(self.dt * 1e9)
        """Sim seconds since construction; never goes back (resets included)."""
        self.episode_start_ns = 0
        self.success_time: float | None = None
        """Episode time at which the task first succeeded (checked every control period; None: not yet)."""
        self._nominal = {
            "geom_friction": self.model.geom_friction.copy(),
            "body_mass": self.model.body_mass.copy(),
            "body_inertia": self.model.body_inertia.copy(),
            "cam_pos": self.model.cam_pos.copy(),
            "cam_quat": self.model.cam_quat.copy(),
            "light_diffuse": self.model.light_diffuse.copy(),
            "light_ambient": self.model.light_ambient.copy(),
            "geom_rgba": self.model.geom_rgba.copy(),
        }
        self._headlight = (self.model.vis.headlight.ambient.copy(), self.model.vis.headlight.diffuse.copy())
        self._table_geom = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, "table")
        self._pending: deque[np.ndarray] = deque()
        self.latency = 0
        self.seed = seed
        self.reset(seed)

    # -- ArmBackend -------------------------------------------------------------------------------
    def now(self) -> float:
        return self.time_offset + self.elapsed

    @property
    def elapsed(self) -> float:
        """Sim seconds since construction, as ``convert.to_sec`` reads a stamp of it (the same float in-process and over ROS)."""
        sec, nanosec = divmod(self.elapsed_ns, 1_000_000_000)
        return sec + nanosec * 1e-9

    def read(self) -> JointReading:
        d = self.data
        return JointReading(
            position=d.qpos[self.qpos_index].copy(),
            velocity=d.qvel[self.dof_index].copy(),
            effort=d.qfrc_actuator[self.dof_index].copy(),
            stamp=self.now(),
        )

    def write(self, position: np.ndarray) -> None:
        position = np.asarray(position, dtype=float)
        if position.shape != self.home.shape or not np.all(np.isfinite(position)):
            raise ValueError(f"expected {self.home.size} finite joint targets")
        self._pending.append(position.copy())
        while len(self._pending) > self.latency:
            self.actuation.set_target(self.data, self._pending.popleft())

    def set_torque(self, enabled: bool) -> None:
        self.actuation.enabled = bool(enabled)
        self.actuation.set_target(self.data, self.actuation.target)

    def torque_enabled(self) -> bool:
        return bool(self.actuation.enabled)

    def close(self) -> None:
        pass

    # -- simulation -------------------------------------------------------------------------------
    def step(self) -> None:
        """Advance one control period."""
        if not self.actuation.enabled:
            self.actuation.set_target(self.data, self.actuation.target)
        for _ in range(self.substeps):
            self.actuation.apply(self.data)
            mujoco.mj_step(self.model, self.data)
        self.elapsed_ns += self.dt_ns
        if self.success_time is None and self.task is not None and self.task.success(self.data):
            self.success_time = self.episode_time

    def _home(self) -> np.ndarray:
        assert self.profile.sim is not None
        if self.profile.sim.home:
            home = np.array(self.profile.sim.home, dtype=float)
        else:
            rng = self.model.jnt_range[self.actuation.joint_ids]
            home = np.where(self.model.jnt_limited[self.actuation.joint_ids], rng.mean(axis=1), 0.0)
        return home

    def reset(self, seed: int | None = None) -> None:
        """Reset the scene: home pose, task randomisation and domain randomisation from ``seed``."""
        self.seed = self.seed + 1 if seed is None else int(seed)
        rng = np.random.default_rng(self.seed)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self._randomize(rng)
        q = self.home.copy()
        noise = self.task.config.randomization.joint_noise if self.task else 0.0
        n_arm = len(self.profile.joints)
        if noise > 0:
            q[:n_arm] += rng.uniform(-noise, noise, n_arm)
        lo, hi = m.jnt_range[self.actuation.joint_ids].T
        q = np.where(m.jnt_limited[self.actuation.joint_ids], np.clip(q, lo, hi), q)
        d.qpos[self.qpos_index] = q
        if self.task is not None:
            self.task.reset(m, d, rng)
        self._pending.clear()
        self.actuation.enabled = True
        self.actuation.set_target(d, q)
        mujoco.mj_forward(m, d)
        if self.task is not None:
            self.task.start(d)
        self.episode_start_ns = self.elapsed_ns
        self.success_time = None

    def _randomize(self, rng: np.random.Generator) -> None:
        m, nominal = self.model, self._nominal
        for key, value in nominal.items():
            getattr(m, key)[:] = value
        m.vis.headlight.ambient[:], m.vis.headlight.diffuse[:] = self._headlight
        if self.task is None:
            return
        r = self.task.config.randomization
        geoms, bodies = self.task.object_geoms(m), self.task.object_bodies(m)
        m.geom_friction[geoms, 0] *= rng.uniform(*r.friction_scale) if r.friction_scale[1] > r.friction_scale[0] else r.friction_scale[0]
        scale = rng.uniform(*r.mass_scale) if r.mass_scale[1] > r.mass_scale[0] else r.mass_scale[0]
        m.body_mass[bodies] *= scale
        m.body_inertia[bodies] *= scale
        self._randomize_visuals(r, np.random.default_rng([self.seed, VISUAL_STREAM]), geoms)
        lo, hi = r.action_latency
        self.latency = int(rng.integers(lo, hi + 1)) if hi > lo else int(lo)

    def _randomize_visuals(self, r, rng: np.random.Generator, object_geoms: list[int]) -> None:
        """Camera poses, lights and colours, from a stream of their own: visual randomisation never changes the
        physical scene a seed gives (the same cube poses with and without it)."""
        m, nominal = self.model, self._nominal
        for cam in range(m.ncam):
            if m.cam_bodyid[cam] != 0:
                continue  # only fixed scene cameras are jittered
            if r.camera_pos_jitter > 0:
                m.cam_pos[cam] += rng.uniform(-r.camera_pos_jitter, r.camera_pos_jitter, 3)
            if r.camera_rot_jitter > 0:
                dq = np.zeros(4)
                mujoco.mju_axisAngle2Quat(dq, rng.normal(size=3) / np.sqrt(3), rng.uniform(-r.camera_rot_jitter, r.camera_rot_jitter))
                out = np.zeros(4)
                mujoco.mju_mulQuat(out, dq, m.cam_quat[cam].copy())
                m.cam_quat[cam] = out
        if r.light_scale[1] > r.light_scale[0] or r.light_scale[0] != 1.0:
            scale = rng.uniform(*r.light_scale) if r.light_scale[1] > r.light_scale[0] else r.light_scale[0]
            ambient, diffuse = self._headlight
            m.light_diffuse[:] = np.clip(nominal["light_diffuse"] * scale, 0, 1)
            m.light_ambient[:] = np.clip(nominal["light_ambient"] * scale, 0, 1)
            m.vis.headlight.ambient[:] = np.clip(ambient * scale, 0, 1)
            m.vis.headlight.diffuse[:] = np.clip(diffuse * scale, 0, 1)
        for geoms, shift in (([self._table_geom] if self._table_geom >= 0 else [], r.table_color_shift),
                             (object_geoms, r.object_color_shift)):
            if shift > 0:
                for g in geoms:
                    m.geom_rgba[g, :3] = np.clip(nominal["geom_rgba"][g, :3] + rng.uniform(-shift, shift, 3), 0, 1)

    # -- task and state ---------------------------------------------------------------------------
    @property
    def episode_time(self) -> float:
        return (self.elapsed_ns - self.episode_start_ns) * 1e-9

    @property
    def episode_seconds(self) -> float:
        return self.task.config.episode_seconds if self.task else float("inf")

    def success(self) -> bool:
        return bool(self.task.success(self.data)) if self.task else False

    def progress(self) -> float:
        return float(self.task.progress(self.data)) if self.task else 0.0

    def object_state(self) -> np.ndarray | None:
        return None if self.task is None else self.task.object_state(self.data)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """EE site position (3,) and quaternion xyzw (4,) in the base (= world) frame."""
        d = self.data
        wxyz = np.zeros(4)
        mujoco.mju_mat2Quat(wxyz, d.site_xmat[self.ee_site])
        return d.site_xpos[self.ee_site].copy(), np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])

    def snapshot(self) -> dict[str, np.ndarray]:
        """What a renderer needs to draw the current state (for rendering off the physics thread)."""
        d = self.data
        return {"qpos": d.qpos.copy(), "mocap_pos": d.mocap_pos.copy(), "mocap_quat": d.mocap_quat.copy()}
