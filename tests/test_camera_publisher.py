"""Camera helpers: clock-offset estimation, depth/color conversion, intrinsics scaling, and the
shared CameraPublisher over DDS (the same helper the MuJoCo twin can use)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import wait_for
from robot_stack.camera_info import Intrinsics
from robot_stack.contract import IMAGE_QOS
from robot_stack.convert import image_to_array, to_sec
from robot_stack.drivers.camera.clock import ClockOffset
from robot_stack.drivers.camera.publisher import convert_color, convert_depth, scale_intrinsics


def test_clock_offset_is_the_minimum_delay_and_tracks_drift_and_jumps():
    clock = ClockOffset(window=2.0, jump=1.0)
    rng = np.random.default_rng(0)
    true_offset = 1000.0
    for k in range(100):  # 30 Hz, delays 1-20 ms
        device = k / 30
        clock.update(device, device + true_offset + 0.001 + 0.019 * rng.random())
    assert clock.offset == pytest.approx(true_offset + 0.001, abs=2e-3)
    assert clock.to_host(5.0) == pytest.approx(5.0 + clock.offset)
    # old samples leave the window: a slowly drifting clock is followed
    for k in range(100, 200):
        device = k / 30
        clock.update(device, device + true_offset + 0.050)
    assert clock.offset == pytest.approx(true_offset + 0.050, abs=1e-9)
    # a host stall: 1.5 s of frames delivered late in one burst, then on time again: no restart
    host = 200 / 30 + true_offset + 0.05 + 1.5
    for k in range(200, 246):
        clock.update(k / 30, host + 0.001 * (k - 200))
    assert clock.resets == 0 and clock.offset == pytest.approx(true_offset + 0.050, abs=1e-9)
    # depth and color sensors deliver interleaved, a frame out of order (late, in a burst): no restart
    arrival = 247 / 30 + true_offset + 0.05
    for n, k in enumerate((246, 245, 247, 246)):
        clock.update(k / 30, arrival + 0.001 * n)
    assert clock.resets == 0 and clock.offset == pytest.approx(true_offset + 0.050, abs=1e-9)
    # the device clock stalls (device time advances 1.5 s less than host time, for good): restarts
    # once the difference has stayed high for `confirm` seconds
    for k in range(246, 400):
        clock.update(k / 30, k / 30 + true_offset + 1.55)
    assert clock.resets == 1 and clock.offset == pytest.approx(true_offset + 1.55, abs=1e-9)
    # the device clock restarts (reset, wrap, reconnect): the estimate restarts at once
    clock.update(0.0, 400 / 30 + true_offset + 1.6)
    assert clock.resets == 2 and clock.offset == pytest.approx(400 / 30 + true_offset + 1.6)


def test_depth_conversion_follows_rep_118():
    raw = np.array([[0, 1000, 65530]], np.uint16)
    assert convert_depth(raw, "16UC1", 0.001) is raw  # millimetre units pass through
    assert convert_depth(raw, "16UC1", 0.0001).tolist() == [[0, 100, 6553]]
    metres = convert_depth(raw, "32FC1", 0.001)
    assert metres.dtype == np.float32 and np.isnan(metres[0, 0]) and metres[0, 1] == pytest.approx(1.0)
    floats = np.array([[np.nan, 0.5, 100.0, -1.0]], np.float32)  # e.g. rendered depth in metres
    assert convert_depth(floats, "16UC1").tolist() == [[0, 500, 65535, 0]]
    assert np.isnan(convert_depth(floats, "32FC1")[0, [0, 3]]).all()


def test_color_conversion_and_intrinsics_scaling():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 2] = 255
    assert convert_color(bgr, "bgr8", "rgb8")[0, 0].tolist() == [255, 0, 0]
    assert convert_color(bgr, "bgr8", "mono8").shape == (2, 2)
    assert convert_color(bgr, "bgr8", "bgr8") is bgr
    intr = Intrinsics(640, 480, np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]]))
    half = scale_intrinsics(intr, 320, 240)
    assert (half.width, half.height, half.fx, half.cx, half.cy) == (320, 240, 300.0, 160.0, 120.0)
    assert half.P[0, 0] == 300.0 and scale_intrinsics(intr, 640, 480) is intr


def test_camera_publisher_publishes_contract_topics(ros, tmp_path):
    import dataclasses

    from sensor_msgs.msg import CameraInfo, Image

    from robot_stack.drivers.camera.publisher import CameraPublisher
    from robot_stack.profile import load_profile

    profile = load_profile("so101")
    cam = dataclasses.replace(profile.camera("wrist"), width=64, height=48, depth=True, depth_encoding="32FC1")
    profile = dataclasses.replace(profile, cameras=(cam,))
    intr = Intrinsics(64, 48, np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]]))
    pub = CameraPublisher(ros.node, profile, "wrist", color_intrinsics=intr, depth_intrinsics=intr)
    got = {name: ros.collect(t, f"wrist/{name}", IMAGE_QOS) for name, t in
           (("color/image_raw", Image), ("color/camera_info", CameraInfo),
            ("depth/image_rect_raw", Image), ("depth/camera_info", CameraInfo))}
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 200

    def publish() -> bool:
        pub.publish_color(rgb, 1234.5)
        pub.publish_depth(np.full((48, 64), 0.75, np.float32), 1234.5)
        return all(got.values())

    wait_for(publish, 20, "all four camera topics")
    image, depth = got["color/image_raw"][-1][1], got["depth/image_rect_raw"][-1][1]
    assert image.encoding == "rgb8" and image_to_array(image)[0, 0].tolist() == [200, 0, 0]
    assert depth.encoding == "32FC1" and float(image_to_array(depth)[0, 0]) == pytest.approx(0.75)
    assert to_sec(image.header.stamp) == pytest.approx(1234.5)
    info = got["color/camera_info"][-1][1]
    assert to_sec(info.header.stamp) == pytest.approx(1234.5) and info.header.frame_id == "wrist_color_optical_frame"
    assert info.k[0] == 50.0 and got["depth/camera_info"][-1][1].header.frame_id == "wrist_depth_optical_frame"
    assert pub.color.frames >= 1 and pub.depth.frames >= 1
