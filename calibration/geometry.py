"""Rigid transforms: 4x4 matrices, quaternions (xyzw at interfaces, wxyz for MuJoCo), rotation vectors."""

from __future__ import annotations

import math

import numpy as np


def transform(rotation: np.ndarray, translation) -> np.ndarray:  # any 3-vector
    T = np.eye(4)
    T[:3, :3] = rotation
    T[:3, 3] = np.asarray(translation, dtype=float).ravel()
    return T


def invert(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    return transform(R.T, -R.T @ t)


def skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def exp_so3(rotvec: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(rotvec))
    if theta < 1e-12:
        return np.eye(3) + skew(rotvec)
    K = skew(np.asarray(rotvec) / theta)
    return np.eye(3) + math.sin(theta) * K + (1 - math.cos(theta)) * K @ K


def log_so3(R: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle) of rotation matrix ``R``."""
    q = matrix_to_quat_wxyz(R)
    w, v = q[0], q[1:]
    n = np.linalg.norm(v)
    if n < 1e-12:
        return 2 * v
    return 2 * math.atan2(n, w) * v / n


def rotation_xyz(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation about fixed x, then y, then z (radians)."""
    return exp_so3(np.array([0, 0, az])) @ exp_so3(np.array([0, ay, 0])) @ exp_so3(np.array([ax, 0, 0]))


def matrix_to_quat_wxyz(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w >= 0) of a rotation matrix (Shepperd's method)."""
    R = np.asarray(R, dtype=float)
    tr = np.trace(R)
    if tr > 0:
        s = 2 * math.sqrt(tr + 1)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2 * math.sqrt(1 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2 * math.sqrt(1 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2 * math.sqrt(1 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def xyzw(wxyz: np.ndarray) -> np.ndarray:
    return np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]], dtype=float)


def wxyz(xyzw_: np.ndarray) -> np.ndarray:
    return np.array([xyzw_[3], xyzw_[0], xyzw_[1], xyzw_[2]], dtype=float)


def pose_from_xyzw(position: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    return transform(quat_wxyz_to_matrix(wxyz(quat_xyzw)), position)


def rotation_angle(R: np.ndarray) -> float:
    """Angle (rad) of rotation ``R``."""
    return float(np.linalg.norm(log_so3(R)))


def project_so3(M: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix to ``M`` (Frobenius norm)."""
    U, _, Vt = np.linalg.svd(M)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        R = U @ np.diag([1, 1, -1]) @ Vt
    return R
