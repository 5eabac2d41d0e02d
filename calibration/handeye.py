"""Hand-eye calibration (AX = XB): where a camera sits on the gripper, or in the robot's base frame.

Inputs per view: the end-effector pose from the arm's joint angles (forward kinematics of the
profile's MJCF, ``Kinematics(profile).fk``) and the board pose in the camera (``solvePnP`` on the
board corners). Two set-ups:

* ``eye_in_hand``: the camera rides on the gripper, the board is fixed in the world. Result: the
  camera's optical frame in the end-effector frame (parent ``frames.end_effector``).
* ``eye_to_hand``: the camera is fixed, the board rides on the gripper. Result: the camera's optical
  frame in the base frame (parent ``frames.base``).

Five classic solvers run on the same motions — Tsai-Lenz, Park-Martin, Horaud-Dornaika, Andreff and
Daniilidis, the methods of OpenCV's ``calibrateHandEye`` (whose Python binding is missing from
OpenCV 5.0, so they are implemented here in NumPy) — and their agreement and the AX = XB residual
are reported; robot poses that do not match the images fail with a one-line ``UserError``.
The result is stored as YAML with explicit parent/child frames, translation (m) and an xyzw quaternion.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import yaml

from robot_stack.calibration.geometry import (
    invert, log_so3, matrix_to_quat_wxyz, pose_from_xyzw, project_so3, quat_wxyz_to_matrix, rotation_angle, skew,
    transform, xyzw,
)
from robot_stack.camera_info import Intrinsics
from robot_stack.errors import UserError
from robot_stack.typed_config import from_dict, load_yaml, to_dict

Mode = Literal["eye_in_hand", "eye_to_hand"]
METHODS = ("tsai", "park", "horaud", "andreff", "daniilidis")


# -- the board in the camera ---------------------------------------------------------------------------
def board_pose(image_points: np.ndarray, object_points: np.ndarray, intrinsics: Intrinsics) -> tuple[np.ndarray, float]:
    """Board pose in the camera optical frame (4x4) and its RMS reprojection error (px)."""
    obj = np.asarray(object_points, np.float64)
    img = np.asarray(image_points, np.float64).reshape(-1, 1, 2)
    ok, rvec, tvec = cv2.solvePnP(obj, img, intrinsics.K, intrinsics.D, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise UserError("solvePnP failed on a board detection (is the board planar and the intrinsics right?)")
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, intrinsics.K, intrinsics.D, rvec, tvec)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, intrinsics.K, intrinsics.D)
    rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img.reshape(-1, 2)) ** 2, axis=1))))
    return transform(cv2.Rodrigues(rvec)[0], tvec.ravel()), rms


# -- AX = XB solvers -------------------------------------------------------------------------------------
def motions(ee_poses: Sequence[np.ndarray], board_poses: Sequence[np.ndarray],
            mode: Mode) -> list[tuple[np.ndarray, np.ndarray]]:
    """Relative motions (A, B) with A X = X B, over all pairs of views."""
    hands = [np.asarray(g) if mode == "eye_in_hand" else invert(np.asarray(g)) for g in ee_poses]
    pairs = []
    for i, j in itertools.combinations(range(len(hands)), 2):
        A = invert(hands[j]) @ hands[i]
        B = board_poses[j] @ invert(board_poses[i])
        if rotation_angle(A[:3, :3]) > np.radians(1.0):  # nearly pure translations carry no rotation information
            pairs.append((A, B))
    return pairs


def _translation(pairs: list[tuple[np.ndarray, np.ndarray]], R: np.ndarray) -> np.ndarray:
    """Least-squares t with (R_A - I) t = R t_B - t_A."""
    M = np.concatenate([A[:3, :3] - np.eye(3) for A, _ in pairs])
    rhs = np.concatenate([R @ B[:3, 3] - A[:3, 3] for A, B in pairs])
    return np.linalg.lstsq(M, rhs, rcond=None)[0]


def _tsai(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    def modified_rodrigues(R: np.ndarray) -> np.ndarray:
        v = log_so3(R)
        angle = np.linalg.norm(v)
        return np.zeros(3) if angle < 1e-12 else 2 * np.sin(angle / 2) * v / angle

    M, rhs = [], []
    for A, B in pairs:
        pa, pb = modified_rodrigues(A[:3, :3]), modified_rodrigues(B[:3, :3])
        M.append(skew(pa + pb))
        rhs.append(pb - pa)
    x = np.linalg.lstsq(np.concatenate(M), np.concatenate(rhs), rcond=None)[0]
    p = 2 * x / np.sqrt(1 + x @ x)
    n2 = p @ p
    R = (1 - n2 / 2) * np.eye(3) + 0.5 * (np.outer(p, p) + np.sqrt(4 - n2) * skew(p))
    return project_so3(R)


def _park(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    H = sum(np.outer(log_so3(A[:3, :3]), log_so3(B[:3, :3])) for A, B in pairs)
    return project_so3(H)


def _quat_left(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([[w, -x, -y, -z], [x, w, -z, y], [y, z, w, -x], [z, -y, x, w]])


def _quat_right(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([[w, -x, -y, -z], [x, w, z, -y], [y, -z, w, x], [z, y, -x, w]])


def _horaud(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    M = np.concatenate([_quat_left(matrix_to_quat_wxyz(A[:3, :3])) - _quat_right(matrix_to_quat_wxyz(B[:3, :3]))
                        for A, B in pairs])
    q = np.linalg.svd(M)[2][-1]
    return quat_wxyz_to_matrix(q)


def _andreff(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    M = np.concatenate([np.kron(A[:3, :3], np.eye(3)) - np.kron(np.eye(3), B[:3, :3].T) for A, B in pairs])
    X = np.linalg.svd(M)[2][-1].reshape(3, 3)
    X *= np.sign(np.linalg.det(X)) / abs(np.linalg.det(X)) ** (1 / 3)
    return project_so3(X)


def _dual_quat(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = matrix_to_quat_wxyz(T[:3, :3])
    return q, 0.5 * _quat_left(np.r_[0.0, T[:3, 3]]) @ q


def _daniilidis(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    rows = []
    for A, B in pairs:
        (a, a_), (b, b_) = _dual_quat(A), _dual_quat(B)
        top = np.hstack([(a[1:] - b[1:])[:, None], skew(a[1:] + b[1:]), np.zeros((3, 4))])
        bottom = np.hstack([(a_[1:] - b_[1:])[:, None], skew(a_[1:] + b_[1:]), (a[1:] - b[1:])[:, None],
                            skew(a[1:] + b[1:])])
        rows += [top, bottom]
    V = np.linalg.svd(np.concatenate(rows))[2]
    (u1, v1), (u2, v2) = (V[-2, :4], V[-2, 4:]), (V[-1, :4], V[-1, 4:])
    roots = np.roots([u1 @ v1, u1 @ v2 + u2 @ v1, u2 @ v2]).real
    values = [s * s * (u1 @ u1) + 2 * s * (u1 @ u2) + u2 @ u2 for s in roots]
    s = roots[int(np.argmax(values))]
    l2 = 1 / np.sqrt(max(values))
    q, q_ = s * l2 * u1 + l2 * u2, s * l2 * v1 + l2 * v2
    t = 2 * (_quat_left(q_) @ (q * np.array([1, -1, -1, -1])))[1:]
    return transform(quat_wxyz_to_matrix(q), t)


def solve_method(pairs: list[tuple[np.ndarray, np.ndarray]], method: str) -> np.ndarray:
    if method == "daniilidis":
        return _daniilidis(pairs)
    R = {"tsai": _tsai, "park": _park, "horaud": _horaud, "andreff": _andreff}[method](pairs)
    return transform(R, _translation(pairs, R))


def residual(pairs: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray) -> tuple[float, float]:
    """RMS AX = XB residual over the motions: rotation (deg) and translation (m)."""
    rot, trans = [], []
    for A, B in pairs:
        E = invert(A @ X) @ (X @ B)
        rot.append(rotation_angle(E[:3, :3]))
        trans.append(np.linalg.norm((A @ X)[:3, 3] - (X @ B)[:3, 3]))
    return float(np.degrees(np.sqrt(np.mean(np.square(rot))))), float(np.sqrt(np.mean(np.square(trans))))


# -- results and files -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodResult:
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]
    """xyzw quaternion."""
    residual_rotation_deg: float = 0.0
    residual_translation_mm: float = 0.0


@dataclass(frozen=True)
class Extrinsics:
    """A camera's pose: the ``child`` (optical) frame in the ``parent`` frame."""

    parent: str
    child: str
    translation: tuple[float, float, float]
    """m, child origin in the parent frame."""
    rotation: tuple[float, float, float, float]
    """xyzw quaternion, child axes in the parent frame."""
    mode: str = ""
    method: str = ""
    views: int = 0
    residual_rotation_deg: float = 0.0
    residual_translation_mm: float = 0.0
    methods: dict[str, MethodResult] = field(default_factory=dict)

    @property
    def matrix(self) -> np.ndarray:
        return pose_from_xyzw(np.array(self.translation), np.array(self.rotation))


@dataclass
class HandEyeResult:
    extrinsics: Extrinsics
    per_method: dict[str, np.ndarray]
    disagreement_mm: float
    """Largest distance between any two methods' camera positions, mm."""
    disagreement_deg: float
    """Largest angle between any two methods' camera orientations, deg."""

    def summary(self) -> str:
        e = self.extrinsics
        return (f"{e.child} in {e.parent}: t = [{', '.join(f'{v:+.4f}' for v in e.translation)}] m, "
                f"q(xyzw) = [{', '.join(f'{v:+.4f}' for v in e.rotation)}] ({e.method}, {e.views} views); "
                f"residual {e.residual_rotation_deg:.3f} deg / {e.residual_translation_mm:.2f} mm; "
                f"methods agree within {self.disagreement_deg:.3f} deg / {self.disagreement_mm:.2f} mm")


def _method_result(X: np.ndarray, pairs: list) -> MethodResult:
    rot, trans = residual(pairs, X)
    return MethodResult(tuple(float(v) for v in X[:3, 3]), tuple(float(v) for v in xyzw(matrix_to_quat_wxyz(X[:3, :3]))),
                        round(rot, 5), round(trans * 1000, 4))


def calibrate(ee_poses: Sequence[np.ndarray], board_poses: Sequence[np.ndarray], mode: Mode, *, parent: str,
              child: str, method: str = "park", max_residual_deg: float = 1.0,
              max_residual_mm: float = 10.0) -> HandEyeResult:
    """Solve AX = XB with every method; ``method`` picks the stored answer.

    ``ee_poses``: end-effector poses in the base frame (4x4), ``board_poses``: board in the camera
    optical frame (4x4), one per view, in the same order.
    """
    if mode not in ("eye_in_hand", "eye_to_hand"):
        raise UserError(f"hand-eye mode must be eye_in_hand or eye_to_hand, not {mode!r}")
    if method not in METHODS:
        raise UserError(f"unknown hand-eye method {method!r} (use one of {', '.join(METHODS)})")
    if len(ee_poses) != len(board_poses):
        raise UserError(f"{len(ee_poses)} robot poses but {len(board_poses)} board detections: they must pair up")
    if len(ee_poses) < 5:
        raise UserError(f"only {len(ee_poses)} views with the board: hand-eye calibration needs at least 5 "
                        "(10-20 recommended) at different gripper orientations")
    pairs = motions(ee_poses, board_poses, mode)
    axes = np.array([log_so3(A[:3, :3]) / np.linalg.norm(log_so3(A[:3, :3])) for A, _ in pairs])
    if len(pairs) < 2 or np.linalg.svd(axes, compute_uv=False)[1] < 0.1:
        raise UserError("the gripper rotates about (nearly) one axis only between views: vary the gripper's "
                        "orientation about at least two axes (tilt and roll the wrist)")
    per_method = {m: solve_method(pairs, m) for m in METHODS}
    results = {m: _method_result(X, pairs) for m, X in per_method.items()}
    best = results[method]
    if best.residual_rotation_deg > max_residual_deg or best.residual_translation_mm > max_residual_mm:
        raise UserError(
            f"robot poses and board detections are inconsistent (AX=XB residual {best.residual_rotation_deg:.2f} deg, "
            f"{best.residual_translation_mm:.1f} mm RMS over {len(pairs)} motions): check that each joint reading "
            f"belongs to its image, the arm was still during capture, and the mode ({mode}) is right")
    dist = max(np.linalg.norm(a[:3, 3] - b[:3, 3]) for a, b in itertools.combinations(per_method.values(), 2))
    angle = max(rotation_angle(a[:3, :3].T @ b[:3, :3]) for a, b in itertools.combinations(per_method.values(), 2))
    extr = Extrinsics(parent, child, best.translation, best.rotation, mode, method, len(ee_poses),
                      best.residual_rotation_deg, best.residual_translation_mm, results)
    return HandEyeResult(extr, per_method, float(dist * 1000), float(np.degrees(angle)))


def save_extrinsics(extr: Extrinsics, path: str | Path) -> None:
    head = ("# robot_stack hand-eye calibration: pose of `child` (camera optical frame: x right, y down, z forward)\n"
            "# in `parent`; translation in m, rotation as an xyzw quaternion. Load with\n"
            "# robot_stack.calibration.handeye.load_extrinsics(path). See docs/calibration.md.\n")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(head + yaml.safe_dump(to_dict(extr), sort_keys=False, default_flow_style=None))


def read_extrinsics(path: str | Path) -> Extrinsics:
    extr = from_dict(Extrinsics, load_yaml(path), str(path))
    q = np.array(extr.rotation)
    if abs(np.linalg.norm(q) - 1) > 1e-3:
        raise UserError(f"{path}: rotation: not a unit quaternion (norm {np.linalg.norm(q):.4f}); expected x, y, z, w")
    return extr


def load_extrinsics(path: str | Path) -> tuple[str, str, np.ndarray, np.ndarray]:
    """(parent, child, position (3,) m, quaternion xyzw (4,)) of a hand-eye calibration file."""
    extr = read_extrinsics(path)
    q = np.array(extr.rotation)
    return extr.parent, extr.child, np.array(extr.translation), q / np.linalg.norm(q)


def mujoco_camera_pose(position: np.ndarray, quat_xyzw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MJCF camera ``pos`` and ``quat`` (wxyz) for an optical-frame pose (MuJoCo cameras look along -z, y up)."""
    R = pose_from_xyzw(position, quat_xyzw)[:3, :3] @ np.diag([1.0, -1.0, -1.0])
    return np.asarray(position, float), matrix_to_quat_wxyz(R)


def calibrate_views(profile, mode: Mode, images: Sequence[tuple[str, np.ndarray]], joints: np.ndarray,
                    board, intrinsics: Intrinsics, camera_frame: str, *, method: str = "park",
                    max_view_rms: float = 2.0) -> tuple[HandEyeResult, list[str]]:
    """Hand-eye from named images and the arm joints at each (profile order); returns the result and the
    names of the images without the board. Robot poses come from the profile's MJCF (``Kinematics.fk``)."""
    from robot_stack.arm.kinematics import Kinematics

    if len(images) != len(joints):
        raise UserError(f"{len(images)} images but {len(joints)} joint readings: they must pair up")
    kin = Kinematics(profile)
    ee, boards, missing = [], [], []
    for (name, image), q in zip(images, joints):
        hit = board.detect(image)
        if hit is None:
            missing.append(name)
            continue
        pose, rms = board_pose(hit[0], board.points_for(hit[1]), intrinsics)
        if rms > max_view_rms:
            raise UserError(f"{name}: board reprojection error {rms:.1f} px: wrong intrinsics for this camera "
                            "(calibrate intrinsics first) or a blurred image")
        position, quat = kin.fk(q)
        ee.append(pose_from_xyzw(position, quat))
        boards.append(pose)
    parent = profile.frames.end_effector if mode == "eye_in_hand" else profile.frames.base
    return calibrate(ee, boards, mode, parent=parent, child=camera_frame, method=method), missing


def twin_camera_mount(profile, model, path: str | Path) -> tuple[str, np.ndarray, np.ndarray]:
    """Where the twin puts a calibrated camera: (MJCF body name, camera ``pos``, camera ``quat`` wxyz in that body).

    The file's parent frame must be one of the profile's frames: ``frames.end_effector`` (the body of
    ``sim.ee_site``, composed with the site's pose), ``frames.base`` (``sim.base_body``) or ``frames.world``.
    Use the result for ``body.add_camera(pos=..., quat=...)`` (MjSpec) or ``<camera pos quat>`` in MJCF.
    """
    import mujoco

    parent, _, position, quat = load_extrinsics(path)
    frames, sim = profile.frames, profile.sim
    pose = pose_from_xyzw(position, quat)
    if parent == frames.end_effector and sim is not None:
        site = model.site(sim.ee_site)
        body = model.body(model.site_bodyid[site.id]).name
        pose = transform(quat_wxyz_to_matrix(model.site_quat[site.id]), model.site_pos[site.id]) @ pose
    elif parent == frames.base and sim is not None and sim.base_body:
        body = sim.base_body
    elif parent in (frames.world, frames.base):
        body = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, 0)
    else:
        raise UserError(f"{path}: parent frame {parent!r} is not a frame of robot {profile.name!r} "
                        f"({frames.end_effector}, {frames.base} or {frames.world})")
    pos, quat_wxyz = mujoco_camera_pose(pose[:3, 3], xyzw(matrix_to_quat_wxyz(pose[:3, :3])))
    return body, pos, quat_wxyz
