"""RealSense node against the SDK's own software_device (in-process) and SDK recordings (node process).

No camera is needed: ``EmulatedRealSense`` feeds synthetic frames through librealsense's
software_device, so sensors, frame queues, rs.align and the recorder are the real SDK. Color frame
k is the RGB pixel (k, 255 - k, 7) everywhere, depth frame k is 1000 + k device units, and device
timestamps are start_ms + k / fps (hardware clock).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import wait_for
from robot_stack.contract import qos
from robot_stack.convert import image_to_array, to_sec
from robot_stack.drivers.camera.emulated import EmulatedIntrinsics, EmulatedRealSense, record_bag
from robot_stack.errors import UserError
from robot_stack.resources import ros_environment

NODE = str(Path(sys.executable).parent / "realsense_node")
FPS = 30


def profile_with(tmp_path: Path, **camera) -> Path:
    data = yaml.safe_load((Path(__file__).parent.parent / "config/robots/so101.yaml").read_text())
    data["cameras"] = [{"name": "front", "width": 640, "height": 480, "fps": FPS, "depth": True} | camera]
    data["hardware"].pop("calibration", None)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def collect_camera(ros):
    """Collect the camera's topics with a deep reader queue: the tests check what the node publishes,
    not whether the Python test subscriber keeps up with 30 fps of full-size images on a loaded machine."""
    from sensor_msgs.msg import CameraInfo, Image

    deep = qos(64)
    return {
        "color": ros.collect(Image, "front/color/image_raw", deep),
        "info": ros.collect(CameraInfo, "front/color/camera_info", deep),
        "depth": ros.collect(Image, "front/depth/image_rect_raw", deep),
        "depth_info": ros.collect(CameraInfo, "front/depth/camera_info", deep),
    }


def in_process_node(ros, emulated: EmulatedRealSense, **params):
    from rclpy.parameter import Parameter

    from robot_stack.drivers.camera.realsense_node import RealSenseNode

    node = RealSenseNode(device=emulated.device, context=ros.context,
                         parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    ros.executor.add_node(node)
    return node


def close_node(ros, node) -> None:
    node.close()
    ros.executor.remove_node(node)
    node.destroy_node()


def color_k(msg) -> int:
    r, g, b = (int(v) for v in image_to_array(msg)[100, 100])
    assert r + g == 255 and b == 7, (r, g, b)
    return r


def check_stamps(ks, stamps, camera: EmulatedRealSense) -> None:
    """Stamps are device times + a host-clock offset that only ever improves (a running minimum)."""
    offsets = np.asarray(stamps) - np.array([camera.timestamp_ms(k) / 1000 for k in ks])
    assert np.all(np.diff(offsets) <= 1e-6), "the offset estimate never grows within a run"
    assert offsets[len(offsets) // 2] - offsets[-1] < 0.05, "the offset estimate settles within a few frames"
    assert abs(stamps[-1] - time.time()) < 5.0, "stamps are in host (ROS) time"


def check_intrinsics(info, expected: EmulatedIntrinsics, frame_id: str) -> None:
    assert (info.width, info.height, info.header.frame_id) == (640, 480, frame_id)
    assert info.distortion_model == "plumb_bob"
    assert np.allclose(info.k, [expected.fx, 0, expected.ppx, 0, expected.fy, expected.ppy, 0, 0, 1])
    assert np.allclose(info.d, expected.coeffs, atol=1e-6)


def test_software_device_color_and_raw_depth(ros, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray

    camera = EmulatedRealSense(serial="801212070001")
    topics = collect_camera(ros)
    diagnostics = ros.collect(DiagnosticArray, "/diagnostics")
    node = in_process_node(ros, camera, robot=str(profile_with(tmp_path)), camera="front", align_depth=False)
    try:
        time.sleep(1.0)  # discovery
        camera.stream(60)
        wait_for(lambda: len(topics["color"]) >= 40 and len(topics["depth"]) >= 40, 30, "40 color and depth images")
        wait_for(lambda: any(s.values for _, m in diagnostics for s in m.status if s.message == "streaming"), 10, "diagnostics")
    finally:
        camera.stop()
        close_node(ros, node)
    color = [m for _, m in topics["color"]]
    depth = [m for _, m in topics["depth"]]
    assert {m.encoding for m in color} == {"rgb8"} and {m.encoding for m in depth} == {"16UC1"}
    assert {m.header.frame_id for m in depth} == {"front_depth_optical_frame"}

    # stamps: device timestamps mapped to host time, one device period apart per frame number
    ks = np.array([color_k(m) for m in color])
    stamps = np.array([to_sec(m.header.stamp) for m in color])
    assert np.all(np.diff(ks) > 0)
    check_stamps(ks, stamps, camera)
    by_k = dict(zip(ks.tolist(), stamps.tolist()))
    for msg in depth:
        value = int(image_to_array(msg)[240, 320])
        k = value - camera.depth_mm
        assert np.all(image_to_array(msg) == value)  # 1 mm units: raw values pass through
        if k in by_k:
            assert to_sec(msg.header.stamp) == pytest.approx(by_k[k], abs=1e-6), "depth and color of one frame share a stamp"

    check_intrinsics(topics["info"][-1][1], camera.intrinsics, "front_color_optical_frame")
    check_intrinsics(topics["depth_info"][-1][1], camera.intrinsics, "front_depth_optical_frame")
    assert node.clock.ready
    status = [s for _, m in diagnostics for s in m.status if s.message == "streaming"][-1]
    values = {kv.key: kv.value for kv in status.values}
    assert status.hardware_id == "Intel RealSense D435 (emulated) (serial 801212070001)"
    assert abs(float(values["clock_offset_ms"]) / 1e3 - node.clock.offset) < 1.0 and int(values["color_frames"]) > 0
    offset = node.clock.offset
    assert abs(offset - (time.time() - camera.timestamp_ms(camera.frame_number) / 1000)) < 5.0


def test_software_device_aligned_depth_in_metres_with_device_scale(ros, tmp_path):
    camera = EmulatedRealSense(serial="801212070002", depth_units=0.0001, depth_mm=20000)  # 0.1 mm units
    topics = collect_camera(ros)
    node = in_process_node(ros, camera, robot=str(profile_with(tmp_path, depth_encoding="32FC1")), camera="front")
    try:
        time.sleep(1.0)
        camera.stream(45)
        wait_for(lambda: len(topics["depth"]) >= 20, 30, "20 aligned depth images")
    finally:
        camera.stop()
        close_node(ros, node)
    msg = topics["depth"][-1][1]
    assert (msg.encoding, msg.width, msg.height, msg.header.frame_id) == ("32FC1", 640, 480, "front_color_optical_frame")
    metres = image_to_array(msg)
    valid = metres[np.isfinite(metres)]
    assert valid.size > 0.9 * metres.size, "aligned depth covers the color image"
    # a flat scene at (20000 + k) * 0.1 mm stays at that depth after re-projection
    assert np.all(np.abs(valid - np.median(valid)) < 1e-3)
    assert 2.0 < float(np.median(valid)) < 2.01
    # aligned depth carries the color camera's intrinsics
    check_intrinsics(topics["depth_info"][-1][1], camera.intrinsics, "front_color_optical_frame")


def test_reconnects_after_frames_stop(ros, tmp_path):
    camera = EmulatedRealSense(serial="801212070003", depth=False)
    topics = collect_camera(ros)
    node = in_process_node(ros, camera, robot=str(profile_with(tmp_path, depth=False)), camera="front",
                           frame_timeout=0.5, reconnect_period=0.2)
    try:
        time.sleep(1.0)  # no frames yet: the node already retries
        camera.stream()  # until stopped: frames sent while the node reopens the device are lost, as on a real bus
        wait_for(lambda: len(topics["color"]) >= 10, 30, "first images")
        camera.stop()
        wait_for(lambda: node.reconnects >= 1, 30, "the node to reopen the device")
        before = len(topics["color"])
        camera.stream()
        wait_for(lambda: len(topics["color"]) >= before + 10, 30, "images after reconnecting")
        assert node.state == "streaming"
    finally:
        camera.stop()
        close_node(ros, node)


def test_missing_serial_lists_connected_devices():
    from robot_stack.drivers.camera.realsense_node import find_device

    camera = EmulatedRealSense(serial="123456789012", name="Intel RealSense D405")
    assert find_device([camera.device], "123456789012") is camera.device
    with pytest.raises(UserError) as err:
        find_device([camera.device], "000000000000")
    message = str(err.value)
    assert "\n" not in message
    assert "no RealSense device with serial '000000000000'" in message
    assert "connected: Intel RealSense D405 (serial 123456789012)" in message
    # several cameras: each node picks its own by serial, and must be told which
    other = EmulatedRealSense(serial="987654321098", name="Intel RealSense D435")
    assert find_device([camera.device, other.device], "987654321098") is other.device
    with pytest.raises(UserError, match=r"several RealSense devices connected \(Intel RealSense D405 \(serial 123456789012\), "
                                        r"Intel RealSense D435 \(serial 987654321098\)\): choose one with the serial parameter"):
        find_device([camera.device, other.device], "")
    with pytest.raises(UserError, match=r"no RealSense device connected \(connected: none\)"):
        find_device([], "")


def start(spawn, **params):
    args = [NODE, "--ros-args"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    return spawn(args, env=ros_environment())


def test_node_process_without_device_gives_one_line_error(spawn):
    proc = start(spawn, robot="so101", camera="front", serial="'017322071'")  # what a shell makes of serial:="'017322071'"
    out, _ = proc.communicate(timeout=60)
    errors = [line for line in out.splitlines() if "error" in line]
    assert proc.returncode == 2, out
    assert len(errors) == 1 and "no RealSense device with serial '017322071' (connected: none)" in errors[0], out
    assert "Traceback" not in out


def test_unquoted_serial_is_a_one_line_error(spawn):
    proc = start(spawn, robot="so101", serial="17322071")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "parameter 'serial': pass it as a string" in out and "Traceback" not in out, out


def test_recording_playback_in_node_process(ros, spawn, tmp_path):
    camera = EmulatedRealSense(serial="801212070004")
    bag = record_bag(camera, tmp_path / "recording.db3", frames=45)
    topics = collect_camera(ros)
    proc = start(spawn, robot=str(profile_with(tmp_path)), camera="front", bag=str(bag), loop="true", align_depth="false")
    wait_for(lambda: len(topics["color"]) >= 60 and len(topics["depth"]) >= 60 or proc.poll() is not None, 60, "images")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert len(topics["color"]) >= 60, out
    assert "streaming from recording" in out and "clock offset host - device" in out, out

    color = [m for _, m in topics["color"]]
    assert {(m.encoding, m.width, m.height) for m in color} == {("rgb8", 640, 480)}
    ks = np.array([color_k(m) for m in color])
    stamps = np.array([to_sec(m.header.stamp) for m in color])
    wraps = [i + 1 for i, (a, b) in enumerate(zip(ks, ks[1:])) if b < a]
    assert wraps, "loop:=true replays the recording"
    bounds = [0, *wraps, len(ks)]  # one pass (the longest seen): recorded device timing mapped to host time
    first = max((slice(a, b) for a, b in zip(bounds, bounds[1:])), key=lambda s: s.stop - s.start)
    assert len(ks[first]) > 20 and np.all(np.diff(ks[first]) > 0)
    check_stamps(ks[first], stamps[first], camera)
    depth = topics["depth"][-1][1]
    assert depth.encoding == "16UC1" and 1000 < int(image_to_array(depth)[0, 0]) <= 1000 + 45
    check_intrinsics(topics["info"][-1][1], camera.intrinsics, "front_color_optical_frame")
    check_intrinsics(topics["depth_info"][-1][1], camera.intrinsics, "front_depth_optical_frame")
