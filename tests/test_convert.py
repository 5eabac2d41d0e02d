"""ROS message <-> numpy conversions for every supported encoding, joints, trajectories, poses."""

import numpy as np
import pytest
from sensor_msgs.msg import Image

from robot_stack import convert
from robot_stack.camera_info import Intrinsics
from robot_stack.convert import MessageError

rng = np.random.default_rng(0)
CASES = {
    "rgb8": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    "bgr8": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    "mono8": rng.integers(0, 256, (48, 64), dtype=np.uint8),
    "16UC1": rng.integers(0, 65536, (48, 64), dtype=np.uint16),
    "32FC1": rng.random((48, 64), dtype=np.float32),
}


@pytest.mark.parametrize("encoding", list(CASES))
def test_image_round_trip(encoding):
    array = CASES[encoding]
    msg = convert.array_to_image(array, encoding, convert.to_stamp(12.5), "cam_optical")
    assert msg.encoding == encoding and msg.header.frame_id == "cam_optical"
    assert msg.step == array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    back = convert.image_to_array(msg)
    assert back.dtype == array.dtype and np.array_equal(back, array)


@pytest.mark.parametrize("encoding", ["16UC1", "rgb8"])
def test_padded_rows_and_big_endian(encoding):
    array = CASES[encoding]
    dtype = array.dtype.newbyteorder(">")
    msg = Image(height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=True)
    row = array.astype(dtype).reshape(array.shape[0], -1).view(np.uint8)
    padded = np.hstack([row, np.zeros((array.shape[0], 7), np.uint8)])
    msg.step = padded.shape[1]
    msg.data = padded.tobytes()
    assert np.array_equal(convert.image_to_array(msg), array)


def test_bad_images_are_rejected():
    with pytest.raises(MessageError, match="unsupported image encoding 'yuv422'"):
        convert.image_to_array(Image(height=1, width=1, encoding="yuv422", step=2, data=b"\0\0"))
    with pytest.raises(MessageError, match="too small"):
        convert.image_to_array(Image(height=4, width=4, encoding="mono8", step=4, data=b"\0" * 8))
    with pytest.raises(MessageError, match="needs dtype uint8"):
        convert.array_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")


def test_stamp_round_trip():
    for t in (0.0, 1.5, 1700000000.123456789):
        assert abs(convert.to_sec(convert.to_stamp(t)) - t) < 1e-6


def test_joint_state_reorders_by_name_and_rejects_missing():
    msg = convert.make_joint_state(["b", "a", "c"], [2.0, 1.0, 3.0], [0.2, 0.1, 0.3])
    pos, vel, eff = convert.joint_state_arrays(msg, ["a", "b"])
    assert pos.tolist() == [1.0, 2.0] and vel.tolist() == [0.1, 0.2] and np.isnan(eff).all()
    with pytest.raises(MessageError, match=r"lacks joints \['z'\]"):
        convert.joint_state_arrays(msg, ["a", "z"])


def test_trajectory_round_trip_and_validation():
    names = ["j1", "j2", "grip"]
    msg = convert.make_trajectory(["j2", "j1"], [0.1, 0.2], np.array([[1.0, 2.0], [3.0, 4.0]]))
    times, positions = convert.trajectory_arrays(msg, names)
    assert np.allclose(times, [0.1, 0.2])
    assert np.allclose(positions[:, :2], [[2.0, 1.0], [4.0, 3.0]]) and np.isnan(positions[:, 2]).all()
    with pytest.raises(MessageError, match="unknown joints"):
        convert.trajectory_arrays(convert.make_trajectory(["x"], [0.1], np.zeros((1, 1))), names)
    with pytest.raises(MessageError, match="NaN"):
        convert.trajectory_arrays(convert.make_trajectory(["j1"], [0.1], np.array([[np.nan]])), names)
    with pytest.raises(MessageError, match="increase"):
        convert.trajectory_arrays(convert.make_trajectory(["j1"], [0.2, 0.1], np.zeros((2, 1))), names)


def test_pose_and_twist():
    msg = convert.make_pose([0.1, 0.2, 0.3], [0, 0, 0, 2.0], "base_link")
    pos, quat = convert.pose_arrays(msg)
    assert np.allclose(pos, [0.1, 0.2, 0.3]) and np.allclose(quat, [0, 0, 0, 1])
    with pytest.raises(MessageError, match="zero quaternion"):
        convert.pose_arrays(convert.make_pose([0, 0, 0], [0, 0, 0, 0], "b"))
    lin, ang = convert.twist_arrays(convert.make_twist([1, 2, 3], [4, 5, 6], "b"))
    assert lin.tolist() == [1, 2, 3] and ang.tolist() == [4, 5, 6]
    with pytest.raises(MessageError, match="NaN"):
        convert.twist_arrays(convert.make_twist([np.nan, 0, 0], [0, 0, 0], "b"))


def test_command_array():
    assert convert.command_array([1.0, 2.0], 2).tolist() == [1.0, 2.0]
    with pytest.raises(MessageError, match="expected 3"):
        convert.command_array([1.0, 2.0], 3)


def test_camera_info_yaml_round_trip(tmp_path):
    intr = Intrinsics.from_fovy(640, 480, 45.0, "front")
    intr.D = np.array([0.1, -0.05, 0.001, 0.002, 0.0])
    path = tmp_path / "front.yaml"
    intr.save(path)
    loaded = Intrinsics.load(path)
    assert np.allclose(loaded.K, intr.K) and np.allclose(loaded.D, intr.D) and loaded.camera_name == "front"
    msg = loaded.to_msg("front_color_optical_frame")
    assert msg.width == 640 and msg.k[0] == pytest.approx(intr.fx) and msg.header.frame_id == "front_color_optical_frame"
    assert np.allclose(Intrinsics.from_msg(msg).P, intr.P)
