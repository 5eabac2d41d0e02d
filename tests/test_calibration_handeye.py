"""Hand-eye calibration on renders of the SO-101 twin with a known camera pose."""

import numpy as np
import pytest

from robot_stack.calibration import handeye
from robot_stack.calibration.board import Board
from robot_stack.calibration.captures import load_capture, save_capture
from robot_stack.calibration.geometry import exp_so3, invert, rotation_angle, transform
from robot_stack.calibration.synthetic import add_camera, handeye_capture
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
    # the twin places an MJCF camera from it: same optical frame
    import mujoco

    spec = mujoco.MjSpec()
    pos, quat_wxyz = handeye.mujoco_camera_pose(position, quat)
    spec.worldbody.add_camera(name="c", pos=pos, quat=quat_wxyz)
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    from robot_stack.calibration.synthetic import camera_pose

    placed = camera_pose(model, data, "c")
    assert np.degrees(rotation_angle(placed[:3, :3].T @ truth[:3, :3])) < 0.2
    assert add_camera  # the same helper builds the calibration scenes


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
