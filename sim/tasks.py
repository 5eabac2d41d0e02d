"""Twin tasks: scene objects, seeded reset randomisation, success and a dense progress measure.

Tasks are configured in ``config/tasks/<name>.yaml`` (``TaskConfig``). Object and target regions
are fractions of the robot profile's workspace box, so one task file serves every robot.

* ``reach``: bring the end-effector site within ``success_distance`` of a random target point.
* ``pick_cube``: lift a randomly placed cube more than ``lift_height`` (sparse success).
* ``push``: push a block across the table to a target pose (x, y, yaw; planar, Push-T-like).
"""

from __future__ import annotations


import mujoco
import numpy as np

from robot_stack.profile import RobotProfile
from robot_stack.sim.scene import workspace_box
from robot_stack.tasks import (  # noqa: F401 - re-exported: the task config and object state live in the core
    ObjectConfig, Randomization, TaskConfig, _quat_yaw, _yaw_quat, load_task_config, object_poses_from_state,
    object_state_from_poses)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1])) if bounds[1] > bounds[0] else float(bounds[0])


def _wrap(angle: float, period: float) -> float:
    return float((angle + period / 2) % period - period / 2)


class Task:
    """Base: workspace-relative sampling and the end-effector site."""

    object_dim = 0

    def __init__(self, config: TaskConfig, profile: RobotProfile):
        self.config, self.profile = config, profile
        self.lower, self.upper = workspace_box(profile)
        self.start_distance = 1.0

    # scene
    def build(self, spec: mujoco.MjSpec, profile: RobotProfile) -> None:
        pass

    def bind(self, model: mujoco.MjModel) -> None:
        assert self.profile.sim is not None
        self.ee_site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, self.profile.sim.ee_site)

    def sample_xy(self, rng: np.random.Generator, fx: tuple[float, float], fy: tuple[float, float]) -> np.ndarray:
        lo, hi = self.lower, self.upper
        return np.array([lo[0] + _uniform(rng, fx) * (hi[0] - lo[0]), lo[1] + _uniform(rng, fy) * (hi[1] - lo[1])])

    def ee_position(self, data: mujoco.MjData) -> np.ndarray:
        return data.site_xpos[self.ee_site].copy()

    # episode
    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        pass

    def start(self, data: mujoco.MjData) -> None:
        """Record the episode's starting measures (after reset and forward kinematics)."""

    def object_poses(self, data: mujoco.MjData) -> np.ndarray:
        """Poses of the task's objects then targets, (k, 7) rows of x, y, z, qx, qy, qz, qw (base frame).

        This is what the twin publishes on ``object_poses`` (and a perception node on hardware)."""
        return np.zeros((0, 7))

    def object_state(self, data: mujoco.MjData) -> np.ndarray | None:
        """The ``object_state`` observation: a function of ``object_poses`` alone, so the ROS path matches."""
        return object_state_from_poses(self.config.kind, self.object_poses(data)) if self.object_dim else None

    def set_object_poses(self, data: mujoco.MjData, poses: np.ndarray) -> None:
        """Put the objects and targets at ``poses`` (rows as ``object_poses`` gives them), at rest."""

    def success(self, data: mujoco.MjData) -> bool:
        raise NotImplementedError

    def progress(self, data: mujoco.MjData) -> float:
        raise NotImplementedError

    def object_geoms(self, model: mujoco.MjModel) -> list[int]:
        return []

    def object_bodies(self, model: mujoco.MjModel) -> list[int]:
        return []


class ReachTask(Task):
    object_dim = 3

    def build(self, spec: mujoco.MjSpec, profile: RobotProfile) -> None:
        body = spec.worldbody.add_body(name="reach_target", mocap=True, pos=[0.3, 0, 0.1])
        body.add_geom(name="reach_target", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.012, 0, 0],
                      rgba=[0.1, 0.9, 0.2, 0.6], contype=0, conaffinity=0)

    def bind(self, model: mujoco.MjModel) -> None:
        super().bind(model)
        self.mocap = int(model.body_mocapid[model.body("reach_target").id])

    def reset(self, model, data, rng) -> None:
        r = self.config.randomization
        xy = self.sample_xy(rng, r.target_x, r.target_y)
        z = self.lower[2] + _uniform(rng, r.target_z) * (self.upper[2] - self.lower[2])
        data.mocap_pos[self.mocap] = [xy[0], xy[1], z]

    def _distance(self, data) -> float:
        return float(np.linalg.norm(self.ee_position(data) - data.mocap_pos[self.mocap]))

    def start(self, data) -> None:
        self.start_distance = max(self._distance(data), 1e-6)

    def object_poses(self, data):
        return np.array([[*data.mocap_pos[self.mocap], 0.0, 0.0, 0.0, 1.0]])

    def set_object_poses(self, data, poses) -> None:
        data.mocap_pos[self.mocap] = np.asarray(poses, dtype=float).reshape(-1, 7)[0, :3]

    def success(self, data) -> bool:
        return self._distance(data) < self.config.success_distance

    def progress(self, data) -> float:
        return float(np.clip(1 - self._distance(data) / self.start_distance, 0, 1))


class _BoxObjectTask(Task):
    body_name = "cube"

    def build(self, spec: mujoco.MjSpec, profile: RobotProfile) -> None:
        o = self.config.object
        body = spec.worldbody.add_body(name=self.body_name, pos=[0.3, 0, o.half_size[2]])
        body.add_freejoint(name=self.body_name)
        body.add_geom(name=self.body_name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(o.half_size), mass=o.mass,
                      friction=[o.friction, 0.01, 0.0002], rgba=list(o.rgba), condim=4)

    def bind(self, model: mujoco.MjModel) -> None:
        super().bind(model)
        self.body = model.body(self.body_name).id
        joint = model.joint(self.body_name)
        self.qadr = int(joint.qposadr[0])
        self.dadr = int(joint.dofadr[0])

    def object_geoms(self, model: mujoco.MjModel) -> list[int]:
        return [model.geom(self.body_name).id]

    def object_bodies(self, model: mujoco.MjModel) -> list[int]:
        return [self.body]

    def place(self, data, xy: np.ndarray, yaw: float) -> None:
        data.qpos[self.qadr: self.qadr + 3] = [xy[0], xy[1], self.config.object.half_size[2]]
        data.qpos[self.qadr + 3: self.qadr + 7] = _yaw_quat(yaw)
        data.qvel[self.dadr: self.dadr + 6] = 0

    def object_pos(self, data) -> np.ndarray:
        return data.qpos[self.qadr: self.qadr + 3].copy()

    def body_pose(self, data) -> np.ndarray:
        q = data.qpos[self.qadr + 3: self.qadr + 7]
        return np.array([*self.object_pos(data), q[1], q[2], q[3], q[0]])

    def set_object_poses(self, data, poses) -> None:
        row = np.asarray(poses, dtype=float).reshape(-1, 7)[0]
        data.qpos[self.qadr: self.qadr + 3] = row[:3]
        data.qpos[self.qadr + 3: self.qadr + 7] = [row[6], row[3], row[4], row[5]]
        data.qvel[self.dadr: self.dadr + 6] = 0


class PickCubeTask(_BoxObjectTask):
    object_dim = 7

    def reset(self, model, data, rng) -> None:
        r = self.config.randomization
        self.place(data, self.sample_xy(rng, r.object_x, r.object_y), _uniform(rng, r.object_yaw))

    def start(self, data) -> None:
        self.rest_z = float(self.object_pos(data)[2])
        self.start_distance = max(float(np.linalg.norm(self.ee_position(data) - self.object_pos(data))), 1e-6)

    def object_poses(self, data):
        return np.array([self.body_pose(data)])

    def lift(self, data) -> float:
        return float(self.object_pos(data)[2] - self.rest_z)

    def success(self, data) -> bool:
        return self.lift(data) > self.config.lift_height

    def progress(self, data) -> float:
        reach = np.clip(1 - np.linalg.norm(self.ee_position(data) - self.object_pos(data)) / self.start_distance, 0, 1)
        lift = np.clip(self.lift(data) / self.config.lift_height, 0, 1)
        return float(0.5 * reach + 0.5 * lift)


class PushTask(_BoxObjectTask):
    body_name = "block"
    object_dim = 6

    def build(self, spec: mujoco.MjSpec, profile: RobotProfile) -> None:
        super().build(spec, profile)
        o = self.config.object
        body = spec.worldbody.add_body(name="push_target", mocap=True, pos=[0.3, 0, 0.0005])
        body.add_geom(name="push_target", type=mujoco.mjtGeom.mjGEOM_BOX, size=[o.half_size[0], o.half_size[1], 0.0005],
                      rgba=[0.1, 0.8, 0.2, 0.5], contype=0, conaffinity=0)

    def bind(self, model: mujoco.MjModel) -> None:
        super().bind(model)
        self.mocap = int(model.body_mocapid[model.body("push_target").id])

    def reset(self, model, data, rng) -> None:
        r = self.config.randomization
        xy = self.sample_xy(rng, r.object_x, r.object_y)
        for _ in range(100):
            goal = self.sample_xy(rng, r.target_x, r.target_y)
            if np.linalg.norm(goal - xy) >= r.min_separation:
                break
        self.place(data, xy, _uniform(rng, r.object_yaw))
        data.mocap_pos[self.mocap] = [goal[0], goal[1], 0.0005]
        data.mocap_quat[self.mocap] = _yaw_quat(_uniform(rng, r.target_yaw))

    def start(self, data) -> None:
        self.start_distance = max(self.errors(data)[0], 1e-6)

    def block_pose(self, data) -> np.ndarray:
        return np.array([*self.object_pos(data)[:2], _quat_yaw(data.qpos[self.qadr + 3: self.qadr + 7])])

    def target_pose(self, data) -> np.ndarray:
        return np.array([*data.mocap_pos[self.mocap][:2], _quat_yaw(data.mocap_quat[self.mocap])])

    def errors(self, data) -> tuple[float, float]:
        block, target = self.block_pose(data), self.target_pose(data)
        return float(np.linalg.norm(block[:2] - target[:2])), abs(_wrap(block[2] - target[2], np.pi / 2))

    def object_poses(self, data):
        q = data.mocap_quat[self.mocap]
        return np.array([self.body_pose(data), [*data.mocap_pos[self.mocap], q[1], q[2], q[3], q[0]]])

    def set_object_poses(self, data, poses) -> None:
        poses = np.asarray(poses, dtype=float).reshape(-1, 7)
        super().set_object_poses(data, poses[:1])
        data.mocap_pos[self.mocap] = poses[1, :3]
        data.mocap_quat[self.mocap] = [poses[1, 6], *poses[1, 3:6]]

    def success(self, data) -> bool:
        dist, yaw = self.errors(data)
        return dist < self.config.success_distance and yaw < self.config.yaw_tolerance

    def progress(self, data) -> float:
        return float(np.clip(1 - self.errors(data)[0] / self.start_distance, 0, 1))


TASKS = {"reach": ReachTask, "pick_cube": PickCubeTask, "push": PushTask}


def make_task(config: TaskConfig | str, profile: RobotProfile) -> Task:
    if isinstance(config, str):
        config = load_task_config(config)
    return TASKS[config.kind](config, profile)
