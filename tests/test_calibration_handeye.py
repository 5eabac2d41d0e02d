"""Hand-eye calibration on renders of the SO-101 twin with a known camera pose."""

import numpy as np
import pytest

from robot_stack.calibration import handeye
from robot_stack.calibration.board import Board
from robot_stack.calibration.captures import load_capture, save_capture
from robot_stack.calibration.geometry import exp_so3, invert, rotation_angle, transform
from robot_stack.calibration.synthetic import handeye_capture
from robot_stack.camera_info import Intrinsics
from robot_stack.errors import UserError
from robot_stack.profile import load_profile

BOARD = Board(9, 6, 0.02)
FOVY = 60.0


@pytest.fixture(scope="module")
def profile():
    return load_profile("so101")


@pytest.fixture(scope="module", params=["eye_in_hand", "eye_to_hand"])
def capture(request, profile):
    return request.param, handeye_capture(profile, request.param, BOARD, 16, seed=1, fovy=FOVY)


def test_recovers_known_camera_pose(capture, profile, tmp_path):
    mode, cap = capture
    save_capture(tmp_path, cap["images"], profile, cap["joints"])  # offline: through a capture folder
    images, joints = load_capture(tmp_path, profile)
    result, missing = handeye.calibrate_views(profile, mode, images, joints, BOARD,
                                              Intrinsics.from_fovy(640, 480, FOVY), "wrist_color_optical_frame")
    assert not missing
    truth = cap["truth"]
    for method, X in result.per_method.items():
        assert np.linalg.norm(X[:3, 3] - truth[:3, 3]) < 0.002, method
        assert np.degrees(rotation_angle(X[:3, :3].T @ truth[:3, :3])) < 0.2, method
    extr = result.extrinsics
    assert extr.parent == ("gripper_tcp" if mode == "eye_in_hand" else "base_link")
    assert result.disagreement_mm < 2 and result.disagreement_deg < 0.2
    handeye.save_extrinsics(extr, tmp_path / "wrist_extrinsics.yaml")
    parent, child, position, quat = handeye.load_extrinsics(tmp_path / "wrist_extrinsics.yaml")
    assert (parent, child) == (extr.parent, "wrist_color_optical_frame")
    assert np.allclose(position, truth[:3, 3], atol=0.002)
    # the twin mounts an MJCF camera from it (on the EE body, or the base): the same optical frame as the truth
    import mujoco

    from robot_stack.calibration.synthetic import body_pose, camera_pose

    spec = mujoco.MjSpec.from_file(str(profile.resolve(profile.sim.mjcf)))
    body, pos, quat_wxyz = handeye.twin_camera_mount(profile, spec.compile(), tmp_path / "wrist_extrinsics.yaml")
    spec.body(body).add_camera(name="calibrated", pos=pos, quat=quat_wxyz)
    model = spec.compile()
    data = mujoco.MjData(model)
    q = cap["joints"][0]
    data.qpos[[model.jnt_qposadr[model.joint(n).id] for n in profile.joint_names]] = q
    mujoco.mj_forward(model, data)
    placed = np.linalg.inv(body_pose(model, data, profile.sim.base_body)) @ camera_pose(model, data, "calibrated")
    if mode == "eye_in_hand":
        from robot_stack.arm.kinematics import Kinematics
        from robot_stack.calibration.geometry import pose_from_xyzw

        expected = pose_from_xyzw(*Kinematics(profile).fk(q)) @ truth
    else:
        expected = truth
    assert np.linalg.norm(placed[:3, 3] - expected[:3, 3]) < 0.002
    assert np.degrees(rotation_angle(placed[:3, :3].T @ expected[:3, :3])) < 0.2


def test_inconsistent_robot_poses(capture, profile):
    mode, cap = capture
    images = [(f"{i}.png", im) for i, im in enumerate(cap["images"])]
    shuffled = np.roll(cap["joints"], 3, axis=0)  # joint readings paired with the wrong images
    with pytest.raises(UserError, match="robot poses and board detections are inconsistent") as err:
        handeye.calibrate_views(profile, mode, images, shuffled, BOARD, Intrinsics.from_fovy(640, 480, FOVY), "cam")
    assert "\n" not in str(err.value)


def test_too_few_views_and_no_board(profile):
    rng = np.random.default_rng(0)
    poses = [transform(exp_so3(rng.normal(size=3)), rng.normal(size=3)) for _ in range(4)]
    with pytest.raises(UserError, match="only 4 views with the board"):
        handeye.calibrate(poses, poses, "eye_in_hand", parent="a", child="b")
    blank = [(f"{i}.png", np.full((480, 640, 3), 200, np.uint8)) for i in range(6)]
    with pytest.raises(UserError, match="only 0 views"):
        handeye.calibrate_views(profile, "eye_in_hand", blank, np.zeros((6, 5)), BOARD,
                                Intrinsics.from_fovy(640, 480, FOVY), "cam")
    # rotations about one axis only cannot determine the camera pose
    X = transform(exp_so3(np.array([0.1, 0.2, 0.3])), [0.01, 0.02, 0.03])
    ee = [transform(exp_so3(np.array([0, 0, a])), [a, 0, 0]) for a in np.linspace(0, 1, 8)]
    boards = [invert(X) @ invert(g) for g in ee]
    with pytest.raises(UserError, match="one axis only"):
        handeye.calibrate(ee, boards, "eye_in_hand", parent="a", child="b")


def test_all_five_methods_agree_on_exact_motions():
    rng = np.random.default_rng(3)
    X = transform(exp_so3(rng.normal(size=3)), rng.normal(size=3) * 0.1)
    W = transform(exp_so3(rng.normal(size=3)), [0.4, 0.1, 0.0])
    ee = [transform(exp_so3(rng.normal(size=3) * 0.5), rng.normal(size=3) * 0.2) for _ in range(8)]
    result = handeye.calibrate(ee, [invert(X) @ invert(g) @ W for g in ee], "eye_in_hand", parent="a", child="b")
    assert set(result.per_method) == set(handeye.METHODS)
    for X_m in result.per_method.values():
        assert np.allclose(X_m, X, atol=1e-9)
    with pytest.raises(UserError, match="unknown hand-eye method"):
        handeye.calibrate(ee, ee, "eye_in_hand", parent="a", child="b", method="magic")
