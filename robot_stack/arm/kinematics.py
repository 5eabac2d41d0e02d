"""Forward and differential inverse kinematics on the profile's MJCF (MuJoCo + mink).

Poses are in the profile's base frame (``profile.frames.base`` = MJCF body ``profile.sim.base_body``),
positions in m, quaternions xyzw. Only the arm joints move; every other DoF is frozen.
"""

from __future__ import annotations

import mink
import mujoco
import numpy as np

from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile


def load_model(profile: RobotProfile) -> mujoco.MjModel:
    """Compile the profile's robot MJCF, with one-line errors for the usual mistakes."""
    if profile.sim is None:
        raise UserError(f"robot profile {profile.name!r} has no 'sim' section (needed for kinematics and the twin)")
    path = profile.resolve(profile.sim.mjcf)
    if not path.is_file():
        raise UserError(f"{profile.source}: sim.mjcf: {path} not found")
    try:
        model = mujoco.MjModel.from_xml_path(str(path))
    except ValueError as err:
        raise UserError(f"{path}: MJCF does not compile: {str(err).splitlines()[0]}") from None
    check_model(profile, model, str(path))
    return model


def check_model(profile: RobotProfile, model: mujoco.MjModel, where: str) -> None:
    """Every profile joint and the EE site must exist in the model."""
    for name in profile.all_joint_names:
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name) < 0:
            raise UserError(f"{where}: robot profile joint {name!r} is not in the model (check the profile's joint names)")
    assert profile.sim is not None
    if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, profile.sim.ee_site) < 0:
        raise UserError(f"{where}: sim.ee_site {profile.sim.ee_site!r} is not a site of the model")
    if profile.sim.base_body and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, profile.sim.base_body) < 0:
        raise UserError(f"{where}: sim.base_body {profile.sim.base_body!r} is not a body of the model")


def _xyzw(wxyz: np.ndarray) -> np.ndarray:
    return np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])


def _wxyz(xyzw: np.ndarray) -> np.ndarray:
    return np.array([xyzw[3], xyzw[0], xyzw[1], xyzw[2]])


class IKError(ValueError):
    """Differential IK produced a non-finite configuration (the solver state was reset)."""


class Kinematics:
    """FK at ``profile.sim.ee_site`` and mink differential IK for the arm joints."""

    def __init__(self, profile: RobotProfile, model: mujoco.MjModel | None = None):
        assert profile.sim is not None or model is not None
        self.profile = profile
        self.model = model if model is not None else load_model(profile)
        assert profile.sim is not None
        self.ee_site = profile.sim.ee_site
        joint_ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in profile.joint_names]
        self.qpos_index = np.array([self.model.jnt_qposadr[j] for j in joint_ids])
        self.arm_dofs = [int(self.model.jnt_dofadr[j]) for j in joint_ids]
        self.frozen_dofs = [d for d in range(self.model.nv) if d not in self.arm_dofs]
        self.base_body = (
            mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, profile.sim.base_body) if profile.sim.base_body else 0
        )
        self.configuration = mink.Configuration(self.model)
        self.task = mink.FrameTask(self.ee_site, "site", position_cost=1.0, orientation_cost=0.3, lm_damping=1e-3)
        self.posture = mink.PostureTask(self.model, cost=1e-3)
        velocities = {j.name: j.velocity for j in profile.joints}
        self.limits = [mink.ConfigurationLimit(self.model), mink.VelocityLimit(self.model, velocities)]
        self.constraints = [mink.DofFreezingTask(self.model, self.frozen_dofs)] if self.frozen_dofs else []

    def _set_arm(self, q_arm: np.ndarray) -> None:
        q = self.configuration.q.copy()
        q[self.qpos_index] = q_arm
        self.configuration.update(q)

    def _base_pose(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.configuration.data
        return data.xpos[self.base_body].copy(), data.xmat[self.base_body].reshape(3, 3).copy()

    def fk(self, q_arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """EE position (3,) and quaternion xyzw (4,) in the base frame."""
        self._set_arm(np.asarray(q_arm, dtype=float))
        data = self.configuration.data
        base_pos, base_rot = self._base_pose()
        pos = base_rot.T @ (data.site_xpos[self.model.site(self.ee_site).id] - base_pos)
        rot = base_rot.T @ data.site_xmat[self.model.site(self.ee_site).id].reshape(3, 3)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, rot.ravel())
        return pos, _xyzw(quat)

    def jacobian(self, q_arm: np.ndarray) -> np.ndarray:
        """Position Jacobian (3, n_arm) of the EE site in the base frame: d(position)/d(q_arm)."""
        self._set_arm(np.asarray(q_arm, dtype=float))
        jacp = np.zeros((3, self.model.nv))
        mujoco.mj_jacSite(self.model, self.configuration.data, jacp, None, self.model.site(self.ee_site).id)
        return self._base_pose()[1].T @ jacp[:, self.arm_dofs]

    def ik_step(self, q_arm: np.ndarray, position: np.ndarray, quat_xyzw: np.ndarray | None, dt: float) -> np.ndarray:
        """One differential-IK step of length ``dt`` from ``q_arm`` towards the base-frame pose."""
        self._set_arm(np.asarray(q_arm, dtype=float))
        base_pos, base_rot = self._base_pose()
        world_pos = base_pos + base_rot @ np.asarray(position, dtype=float)
        if quat_xyzw is None:
            self.task.set_orientation_cost(0.0)
            rot = self.configuration.data.site_xmat[self.model.site(self.ee_site).id].reshape(3, 3)
        else:
            self.task.set_orientation_cost(0.3)
            local = np.zeros(9)
            mujoco.mju_quat2Mat(local, _wxyz(np.asarray(quat_xyzw, dtype=float)))
            rot = base_rot @ local.reshape(3, 3)
        wxyz = np.zeros(4)
        mujoco.mju_mat2Quat(wxyz, rot.ravel())
        self.task.set_target(mink.SE3.from_rotation_and_translation(mink.SO3(wxyz), world_pos))
        self.posture.set_target(self.configuration.q)
        velocity = mink.solve_ik(
            self.configuration, [self.task, self.posture], dt, "daqp", limits=self.limits, constraints=self.constraints
        )
        self.configuration.integrate_inplace(velocity, dt)
        q = self.configuration.q[self.qpos_index].copy()
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(self.configuration.q))):
            self.reset()
            raise IKError("IK produced a non-finite configuration (target unreachable or not finite)")
        return q

    def reset(self) -> None:
        """Start the solver from the model's reference configuration (after a non-finite result)."""
        self.configuration.update(self.model.qpos0.copy())

    def ik(self, position: np.ndarray, quat_xyzw: np.ndarray | None, q_init: np.ndarray, *, iterations: int = 200,
           tolerance: float = 1e-4) -> np.ndarray:
        """Arm joint positions reaching the pose (iterates ``ik_step`` until within ``tolerance`` m)."""
        q = np.asarray(q_init, dtype=float)
        for _ in range(iterations):
            q = self.ik_step(q, position, quat_xyzw, dt=0.05)
            if np.linalg.norm(self.fk(q)[0] - position) < tolerance:
                break
        return q
