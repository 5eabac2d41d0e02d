"""Intrinsics from MuJoCo renders of a checkerboard seen by a camera of known fovy."""

import numpy as np
import pytest

from robot_stack.calibration import intrinsics as intr
from robot_stack.calibration.board import Board
from robot_stack.calibration.synthetic import BoardScene
from robot_stack.camera_info import Intrinsics
from robot_stack.errors import UserError

FOVY = 55.0
BOARD = Board(9, 6, 0.02)


@pytest.fixture(scope="module")
def scene():
    s = BoardScene(BOARD, 640, 480, FOVY)
    yield s
    s.close()


@pytest.fixture(scope="module")
def views(scene):
    return [(f"view_{i:02d}.png", scene.render(pose)) for i, pose in enumerate(scene.random_views(18, seed=7))]


def test_pixel_centre_convention(scene):
    """MuJoCo's pinhole: fy = 0.5 H / tan(fovy/2), principal point at ((W-1)/2, (H-1)/2) in OpenCV pixels."""
    import cv2

    truth = Intrinsics.from_fovy(640, 480, FOVY)
    for pose in scene.random_views(3, seed=1):
        corners, ids = BOARD.detect(scene.render(pose))
        proj, _ = cv2.projectPoints(BOARD.points_for(ids), cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3], truth.K, None)
        offset = (corners - proj.reshape(-1, 2)).mean(axis=0)
        assert np.all(np.abs(offset) < 0.1), offset  # half a pixel off if the centre were W/2


def test_recovers_known_intrinsics(views, tmp_path):
    for name, image in views[:3]:
        intr.save_image(tmp_path / name, image)
    result = intr.calibrate(views, BOARD, camera_name="front")
    truth = Intrinsics.from_fovy(640, 480, FOVY)
    got = result.intrinsics
    for key in ("fx", "fy", "cx", "cy"):
        assert abs(getattr(got, key) / getattr(truth, key) - 1) < 0.005, (key, getattr(got, key), getattr(truth, key))
    assert result.rms < 0.5
    assert set(result.per_view) == {n for n, _ in views} and max(result.per_view.values()) < 0.5
    got.save(tmp_path / "front.yaml")
    loaded = Intrinsics.load(tmp_path / "front.yaml")
    assert np.allclose(loaded.K, got.K) and loaded.camera_name == "front"
    assert [n for n, _ in intr.load_images(tmp_path)] == [n for n, _ in views[:3]]


def test_charuco_board_if_available():
    """A ChArUco board (texture from Board.image via MjSpec) gives the same intrinsics."""
    import cv2

    if not hasattr(cv2, "aruco"):
        pytest.skip("cv2.aruco not in this OpenCV build")
    board = Board(7, 5, 0.03, kind="charuco")
    scene = BoardScene(board, 640, 480, FOVY)
    try:
        views = [(f"{i}.png", scene.render(p)) for i, p in enumerate(scene.random_views(16, seed=2))]
    finally:
        scene.close()
    result = intr.calibrate(views, board)
    truth = Intrinsics.from_fovy(640, 480, FOVY)
    for key in ("fx", "fy", "cx", "cy"):
        assert abs(getattr(result.intrinsics, key) / getattr(truth, key) - 1) < 0.005, key
    assert result.rms < 0.5 and not result.rejected


def test_degenerate_captures(scene, views):
    with pytest.raises(UserError, match="only 4 of 4 images show the board; need at least 8"):
        intr.calibrate(views[:4], BOARD)
    blank = [(f"blank_{i}.png", np.full((480, 640, 3), 128, np.uint8)) for i in range(3)]
    with pytest.raises(UserError, match="board not found in any of the 3 images"):
        intr.calibrate(blank, BOARD)
    with pytest.raises(UserError, match="not found in any"):
        intr.calibrate(views[:3], Board(7, 6, 0.02))  # wrong board size
    same = [(f"same_{i}.png", views[0][1]) for i in range(10)]
    with pytest.raises(UserError, match="nearly the same place"):
        intr.calibrate(same, BOARD)
    with pytest.raises(UserError, match="different sizes") as err:
        intr.calibrate([views[0], ("small.png", views[1][1][:240, :320])], BOARD)
    assert "\n" not in str(err.value)
