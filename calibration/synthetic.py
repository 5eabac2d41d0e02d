"""MuJoCo scenes with a calibration board and cameras of known pose and field of view.

Ground truth for the calibration tests and benchmarks, and a way to try the calibration tools
without hardware: the board is built from box geoms (black squares on a white plate), so its
geometry is exact, and renders come from ``mujoco.Renderer`` (headless with ``MUJOCO_GL=egl``).

Poses are 4x4 homogeneous transforms. Camera poses are given for the *optical* frame (OpenCV: x
right, y down, z forward); MuJoCo cameras look along -z with y up, a half turn about x away.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_stack.calibration.board import Board
from robot_stack.calibration.geometry import matrix_to_quat_wxyz, transform
from robot_stack.profile import RobotProfile

OPTICAL_TO_MJ = np.diag([1.0, -1.0, -1.0])
"""Rotation from the optical frame to MuJoCo's camera frame (and back: it is its own inverse)."""


def add_board(body: mujoco.MjsBody, board: Board, pose: np.ndarray | None = None, name: str = "board",
              spec: mujoco.MjSpec | None = None) -> None:
    """Add ``board`` to ``body``, board frame at ``pose`` in the body, printed face towards -z.

    A checkerboard is built from box geoms (a white plate and black squares: exact geometry); a ChArUco
    board is a plate textured with ``board.image()`` (needs ``spec`` for the texture and material).
    """
    pose = np.eye(4) if pose is None else pose
    frame = body.add_frame(pos=pose[:3, 3], quat=matrix_to_quat_wxyz(pose[:3, :3]))
    half = board.square / 2
    margin = board.square
    plate = [board.cols * half + margin, board.rows * half + margin, 0.002]
    if board.kind == "charuco":
        if spec is None:
            raise ValueError("a ChArUco board needs the MjSpec for its texture")
        image = np.fliplr(board.image(px_per_square=80, margin=1))  # the -z face shows the texture mirrored
        tex = spec.add_texture(name=f"{name}_texture", type=mujoco.mjtTexture.mjTEXTURE_2D, width=image.shape[1],
                               height=image.shape[0], nchannel=3)
        tex.data = np.ascontiguousarray(np.dstack([image] * 3)).tobytes()
        material = spec.add_material(name=f"{name}_material")
        material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = f"{name}_texture"
        frame.add_geom(name=f"{name}_plate", type=mujoco.mjtGeom.mjGEOM_BOX, contype=0, conaffinity=0, size=plate,
                       pos=[0, 0, 0.002], material=f"{name}_material")
        return
    frame.add_geom(name=f"{name}_plate", type=mujoco.mjtGeom.mjGEOM_BOX, contype=0, conaffinity=0,
                   size=plate, pos=[0, 0, 0.00205], rgba=[1, 1, 1, 1])
    for i, (x, y) in enumerate(board.squares()):
        frame.add_geom(name=f"{name}_sq{i}", type=mujoco.mjtGeom.mjGEOM_BOX, contype=0, conaffinity=0,
                       size=[half, half, 0.0001], pos=[x, y, 0], rgba=[0, 0, 0, 1])


def add_camera(body: mujoco.MjsBody, name: str, fovy: float, pose_optical: np.ndarray) -> None:
    """Add a camera whose optical frame sits at ``pose_optical`` in ``body``."""
    body.add_camera(name=name, pos=pose_optical[:3, 3], quat=matrix_to_quat_wxyz(pose_optical[:3, :3] @ OPTICAL_TO_MJ),
                    fovy=fovy)


def camera_pose(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> np.ndarray:
    """World pose of camera ``name``'s optical frame."""
    cid = model.camera(name).id
    return transform(data.cam_xmat[cid].reshape(3, 3) @ OPTICAL_TO_MJ, data.cam_xpos[cid])


def body_pose(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> np.ndarray:
    bid = model.body(name).id
    return transform(data.xmat[bid].reshape(3, 3), data.xpos[bid])


def site_pose(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> np.ndarray:
    sid = model.site(name).id
    return transform(data.site_xmat[sid].reshape(3, 3), data.site_xpos[sid])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """Optical-frame pose at ``eye`` looking at ``target`` (image 'up' towards ``up``)."""
    z = np.asarray(target, float) - np.asarray(eye, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    return transform(np.stack([x, np.cross(z, x), z], axis=1), eye)


class BoardScene:
    """A free camera (optical frame = world frame) and a board on a mocap body: for intrinsics."""

    def __init__(self, board: Board, width: int = 640, height: int = 480, fovy: float = 55.0):
        spec = mujoco.MjSpec()
        spec.visual.global_.offwidth, spec.visual.global_.offheight = max(width, 640), max(height, 480)
        spec.visual.headlight.ambient = [0.6, 0.6, 0.6]
        spec.visual.headlight.diffuse = [0.3, 0.3, 0.3]
        add_camera(spec.worldbody, "cam", fovy, np.eye(4))
        add_board(spec.worldbody.add_body(name="board", mocap=True), board, spec=spec)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, height=height, width=width)
        self.board, self.fovy, self.width, self.height = board, fovy, width, height

    def render(self, board_in_camera: np.ndarray) -> np.ndarray:
        """RGB image with the board at ``board_in_camera`` (4x4, optical frame)."""
        self.data.mocap_pos[0] = board_in_camera[:3, 3]
        self.data.mocap_quat[0] = matrix_to_quat_wxyz(board_in_camera[:3, :3])
        mujoco.mj_forward(self.model, self.data)
        self.renderer.update_scene(self.data, camera="cam")
        return self.renderer.render().copy()

    def random_views(self, n: int, seed: int = 0, distance: tuple[float, float] = (0.28, 0.45),
                     tilt_deg: float = 35.0) -> list[np.ndarray]:
        """``n`` board poses that keep the whole board in view, tilted up to ``tilt_deg`` about x and y."""
        from robot_stack.calibration.geometry import rotation_xyz

        rng = np.random.default_rng(seed)
        poses = []
        f = 0.5 * self.height / np.tan(np.radians(self.fovy) / 2)
        while len(poses) < n:
            z = rng.uniform(*distance)
            ax, ay, az = np.radians(rng.uniform(-tilt_deg, tilt_deg, 2)).tolist() + [np.radians(rng.uniform(-20, 20))]
            pose = transform(rotation_xyz(ax, ay, az), [0.0, 0.0, z])
            pose[0, 3] = rng.uniform(-0.25, 0.25) * z * self.width / f
            pose[1, 3] = rng.uniform(-0.25, 0.25) * z * self.height / f
            corners = (pose[:3, :3] @ self.board_outline().T).T + pose[:3, 3]
            u = f * corners[:, 0] / corners[:, 2] + self.width / 2
            v = f * corners[:, 1] / corners[:, 2] + self.height / 2
            if u.min() > 15 and v.min() > 15 and u.max() < self.width - 15 and v.max() < self.height - 15:
                poses.append(pose)
        return poses

    def board_outline(self) -> np.ndarray:
        hx, hy = (self.board.cols / 2 + 1) * self.board.square, (self.board.rows / 2 + 1) * self.board.square
        return np.array([[-hx, -hy, 0], [hx, -hy, 0], [hx, hy, 0], [-hx, hy, 0]])

    def close(self) -> None:
        self.renderer.close()


class RobotBoardScene:
    """The profile's robot with a camera and a board: one on the end-effector body, one on a mocap body.

    ``mode='eye_in_hand'``: the camera rides on the EE site's body at ``mount`` (optical frame in the
    EE site frame) and the board is the mocap body. ``mode='eye_to_hand'``: the board rides on the EE
    body at ``mount`` (board frame in the EE site frame) and the camera is the mocap body.
    """

    def __init__(self, profile: RobotProfile, mode: str, mount: np.ndarray, board: Board, *, fovy: float = 60.0,
                 width: int = 640, height: int = 480):
        assert profile.sim is not None
        spec = mujoco.MjSpec.from_file(str(profile.resolve(profile.sim.mjcf)))
        spec.visual.global_.offwidth, spec.visual.global_.offheight = max(width, 640), max(height, 480)
        spec.visual.headlight.ambient = [0.6, 0.6, 0.6]
        spec.visual.headlight.diffuse = [0.3, 0.3, 0.3]
        model = spec.compile()  # to find the EE site's body and pose
        site = model.site(profile.sim.ee_site)
        ee_body = spec.body(model.body(model.site_bodyid[site.id]).name)
        site_in_body = transform(_quat_to_matrix(model.site_quat[site.id]), model.site_pos[site.id])
        mocap = spec.worldbody.add_body(name="calibration_mocap", mocap=True)
        if mode == "eye_in_hand":
            add_camera(ee_body, "cam", fovy, site_in_body @ mount)
            add_board(mocap, board, spec=spec)
        elif mode == "eye_to_hand":
            add_board(ee_body, board, site_in_body @ mount, spec=spec)
            add_camera(mocap, "cam", fovy, np.eye(4))
        else:
            raise ValueError(f"mode must be eye_in_hand or eye_to_hand, not {mode!r}")
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, height=height, width=width)
        self.profile, self.mode, self.ee_site = profile, mode, profile.sim.ee_site
        self.base_body = profile.sim.base_body or "world"
        self.qadr = [self.model.jnt_qposadr[self.model.joint(n).id] for n in profile.joint_names]
        self.hide_robot = mujoco.MjvOption()
        self.hide_robot.geomgroup[1:] = 0  # the board is in group 0; robot meshes (group 2) would occlude it

    def set_joints(self, q_arm: np.ndarray) -> None:
        self.data.qpos[self.qadr] = q_arm
        mujoco.mj_forward(self.model, self.data)

    def set_mocap(self, pose_world: np.ndarray) -> None:
        self.data.mocap_pos[0] = pose_world[:3, 3]
        self.data.mocap_quat[0] = matrix_to_quat_wxyz(pose_world[:3, :3])
        mujoco.mj_forward(self.model, self.data)

    def render(self, show_robot: bool = False) -> np.ndarray:
        self.renderer.update_scene(self.data, camera="cam", scene_option=None if show_robot else self.hide_robot)
        return self.renderer.render().copy()

    def in_base(self, pose_world: np.ndarray) -> np.ndarray:
        return np.linalg.inv(body_pose(self.model, self.data, self.base_body)) @ pose_world

    def ee_pose(self) -> np.ndarray:
        return site_pose(self.model, self.data, self.ee_site)

    def camera_pose(self) -> np.ndarray:
        return camera_pose(self.model, self.data, "cam")

    def close(self) -> None:
        self.renderer.close()


def _quat_to_matrix(wxyz: np.ndarray) -> np.ndarray:
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.asarray(wxyz, dtype=float))
    return m.reshape(3, 3)


def handeye_capture(profile: RobotProfile, mode: str, board: Board, n: int = 18, *, seed: int = 0,
                    fovy: float = 60.0, width: int = 640, height: int = 480,
                    spread: tuple[float, ...] = (0.3, 0.3, 0.3, 0.48, 0.75)) -> dict:
    """Render ``n`` views of a hand-eye set-up around the profile's home pose.

    Returns ``joints`` (n, arm joints) and ``images`` (n RGB) in view order, and ``truth``: the camera
    optical frame in the EE frame (eye_in_hand) or in the base frame (eye_to_hand), 4x4.
    """
    assert profile.sim is not None
    home = np.array(profile.sim.home[:len(profile.joints)]) if profile.sim.home else np.zeros(len(profile.joints))
    probe = RobotBoardScene(profile, mode, np.eye(4), board, fovy=fovy, width=width, height=height)
    probe.set_joints(home)
    ee = probe.ee_pose()
    probe.close()
    p = ee[:3, 3]
    if mode == "eye_in_hand":  # camera 4 cm above the tool, board 25 cm ahead and below
        cam = look_at(p + np.array([0.0, 0.0, 0.04]), p + np.array([0.12, 0.0, -0.2]))
        mount, mocap = np.linalg.inv(ee) @ cam, transform(cam[:3, :3], p + np.array([0.12, 0.0, -0.2]))
    else:  # board 7 cm above the tool, camera ~40 cm away looking at it
        at = p + np.array([0.0, 0.0, 0.07])
        cam = look_at(at + np.array([0.25, 0.1, 0.25]), at)
        mount, mocap = np.linalg.inv(ee) @ transform(cam[:3, :3], at), cam
    scene = RobotBoardScene(profile, mode, mount, board, fovy=fovy, width=width, height=height)
    rng = np.random.default_rng(seed)
    joints, images, tries = [], [], 0
    try:
        scene.set_mocap(mocap)
        while len(images) < n and tries < 10 * n:
            tries += 1
            q = home + rng.uniform(-1, 1, len(home)) * np.resize(np.asarray(spread), len(home))
            scene.set_joints(q)
            image = scene.render()
            if board.detect(image) is not None:
                joints.append(q)
                images.append(image)
        cam_base = scene.in_base(scene.camera_pose())
        truth = np.linalg.inv(scene.in_base(scene.ee_pose())) @ cam_base if mode == "eye_in_hand" else cam_base
    finally:
        scene.close()
    return {"joints": np.array(joints), "images": images, "truth": truth}
