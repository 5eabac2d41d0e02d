"""End-effector action space: joint targets <-> end-effector targets (position, 6-D rotation, gripper).

With ``obs.action_space: ee`` the policy learns where the end effector should go instead of joint
angles: the recorded joint commands become, by forward kinematics, the commanded end-effector
position (m, robot base frame) and orientation as the first two columns of its rotation matrix
(Zhou et al. 2019: continuous, unlike quaternions or Euler angles), as in diffusion_policy's and
UMI's real-robot policies; gripper targets pass through. The map from an object's pose to such a
target is nearly linear, so few demonstrations place the gripper precisely. The policy returns joint
targets again (inverse kinematics, seeded by the current joint positions), so servers, evaluation
and the robot contract see joint trajectories either way.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_stack.arm.kinematics import Kinematics
from robot_stack.profile import RobotProfile

POSE_DIM = 9
"""Position (3) + the first two rotation-matrix columns (6)."""


def rotation_6d(quat_xyzw: np.ndarray) -> np.ndarray:
    wxyz = np.array([quat_xyzw[3], *quat_xyzw[:3]], dtype=float)
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, wxyz)
    return mat.reshape(3, 3)[:, :2].T.ravel()


def quat_from_6d(r6: np.ndarray) -> np.ndarray:
    """Gram-Schmidt of two (noisy) columns -> rotation -> quaternion xyzw."""
    x = r6[:3] / max(np.linalg.norm(r6[:3]), 1e-9)
    y = r6[3:] - x * (x @ r6[3:])
    y = y / max(np.linalg.norm(y), 1e-9)
    mat = np.stack([x, y, np.cross(x, y)], 1)
    wxyz = np.zeros(4)
    mujoco.mju_mat2Quat(wxyz, mat.ravel())
    return np.array([*wxyz[1:], wxyz[0]])


class EndEffectorActions:
    """``encode`` joint targets (N, n_joints) -> (N, dim); ``decode`` them back through the arm's IK."""

    def __init__(self, profile: RobotProfile, ik_iterations: int = 30):
        self.kinematics = Kinematics(profile)
        self.n_arm = len(profile.joints)
        self.n_joints = len(profile.all_joint_names)
        self.dim = POSE_DIM + self.n_joints - self.n_arm
        self.ik_iterations = ik_iterations

    def encode(self, joints: np.ndarray) -> np.ndarray:
        joints = np.asarray(joints, dtype=float)
        out = np.empty((len(joints), self.dim), np.float32)
        for i, q in enumerate(joints):
            position, quat = self.kinematics.fk(q[: self.n_arm])
            out[i] = [*position, *rotation_6d(quat), *q[self.n_arm:]]
        return out

    def decode(self, targets: np.ndarray, q_start: np.ndarray) -> np.ndarray:
        """(T, dim) targets in order -> (T, n_joints) joint targets; each IK starts from the previous solution."""
        q = np.asarray(q_start, dtype=float)[: self.n_arm]
        out = np.empty((len(targets), self.n_joints), np.float32)
        for i, target in enumerate(np.asarray(targets, dtype=float)):
            q = self.kinematics.ik(target[:3], quat_from_6d(target[3:POSE_DIM]), q, iterations=self.ik_iterations)
            out[i, : self.n_arm] = q
            out[i, self.n_arm:] = target[POSE_DIM:]
        return out
