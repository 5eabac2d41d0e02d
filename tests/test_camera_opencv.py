"""OpenCV camera node in a real process over DDS, replaying video files generated here (MJPG .avi).

Frame k of a test video carries k in binary as eight black/white stripes, and a pure red band
on top, so the subscriber can check order, channel order, stamps and rate of what arrives.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import wait_for
from robot_stack.camera_info import Intrinsics
from robot_stack.contract import IMAGE_QOS
from robot_stack.convert import image_to_array, to_sec
from robot_stack.resources import ros_environment

NODE = str(Path(sys.executable).parent / "opencv_camera_node")
W, H, FPS = 320, 240, 30


def write_video(path: Path, frames: int, width: int = W, height: int = H, fps: int = FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    stripe = width // 8
    for k in range(frames):
        img = np.zeros((height, width, 3), np.uint8)
        for bit in range(8):
            if k >> bit & 1:
                img[height // 4:, bit * stripe:(bit + 1) * stripe] = 255
        img[: height // 4 - 8] = (0, 0, 255)  # BGR red
        writer.write(img)
    writer.release()
    return path


def frame_number(rgb: np.ndarray) -> int:
    h, w = rgb.shape[:2]
    stripe = w // 8
    row = rgb[h * 5 // 8]
    gray = row.mean(axis=1) if row.ndim == 2 else row
    return sum(1 << bit for bit in range(8) if gray[bit * stripe + stripe // 2] > 128)


def profile_with(tmp_path: Path, **camera) -> Path:
    data = yaml.safe_load((Path(__file__).parent.parent / "config/robots/so101.yaml").read_text())
    data["cameras"] = [{"name": "front", "width": W, "height": H, "fps": FPS} | camera]
    data["hardware"].pop("calibration", None)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start(spawn, **params):
    args = [NODE, "--ros-args"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    return spawn(args, env=ros_environment())


def stop(proc) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    return out


def test_file_replay_publishes_paced_stamped_rgb_with_camera_info(ros, spawn, tmp_path):
    from sensor_msgs.msg import CameraInfo, Image

    video = write_video(tmp_path / "count.avi", 30)
    calib = Intrinsics(W, H, np.array([[300.0, 0, 159.5], [0, 301.0, 119.5], [0, 0, 1]]), [0.1, -0.2, 0, 0, 0.05],
                       camera_name="front")
    calib.save(tmp_path / "front.yaml")
    images = ros.collect(Image, "front/color/image_raw", IMAGE_QOS)
    infos = ros.collect(CameraInfo, "front/color/camera_info", IMAGE_QOS)
    proc = start(spawn, robot="so101", camera="front", width=W, height=H, device=str(video), loop="true",
                 intrinsics=str(tmp_path / "front.yaml"))
    wait_for(lambda: len(images) >= 75 or proc.poll() is not None, 60, "75 images")
    out = stop(proc)
    assert len(images) >= 75, out

    msgs = [m for _, m in images]
    assert {m.encoding for m in msgs} == {"rgb8"}
    assert {(m.width, m.height) for m in msgs} == {(W, H)}
    assert {m.header.frame_id for m in msgs} == {"front_color_optical_frame"}
    first = image_to_array(msgs[0])
    assert np.all(np.abs(first[5, 5].astype(int) - [255, 0, 0]) < 30), "red band must arrive as RGB"

    numbers = [frame_number(image_to_array(m)) for m in msgs]
    stamps = np.array([to_sec(m.header.stamp) for m in msgs])
    # each stamp is on the file's 1/FPS grid and names the frame it carries (across the loop's wrap 29 -> 0);
    # image topics are best-effort, so a busy subscriber loses some (in CI: bursts of 15 in a row)
    advanced = np.round(np.diff(stamps) * FPS).astype(int)
    assert np.allclose(np.diff(stamps), advanced / FPS, atol=2e-3) and np.all(advanced >= 1), np.diff(stamps) * FPS
    mismatched = np.flatnonzero((np.diff(numbers) - advanced) % 30)
    assert mismatched.size == 0, [(numbers[i:i + 2], advanced[i]) for i in mismatched]
    assert np.mean(advanced == 1) > 0.5, numbers
    # stamps are wall-clock capture times and the replay is paced at the file's rate: the stamps advance as
    # fast as the wall clock between the first and last message received
    received = np.array([t for t, _ in images])
    wall = received - time.monotonic() + time.time()
    assert np.all(np.abs(wall - stamps) < 1.0)
    pace = (stamps[-1] - stamps[0]) / (received[-1] - received[0])
    assert 0.8 < pace < 1.25, f"replay at {pace:.2f}x the file's rate, expected 1"

    info = infos[-1][1]
    assert np.allclose(info.k, calib.K.ravel()) and np.allclose(info.d, calib.D)
    assert (info.width, info.height, info.header.frame_id) == (W, H, "front_color_optical_frame")
    info_stamps = {to_sec(m.header.stamp) for _, m in infos}
    assert np.mean([s in info_stamps for s in stamps]) > 0.9, "each image comes with a CameraInfo of the same stamp"


def test_encoding_from_profile_size_warning_and_uncalibrated_info(ros, spawn, tmp_path):
    from sensor_msgs.msg import CameraInfo, Image

    video = write_video(tmp_path / "small.avi", 20, width=160, height=120)
    profile = profile_with(tmp_path, encoding="bgr8")
    images = ros.collect(Image, "front/color/image_raw", IMAGE_QOS)
    infos = ros.collect(CameraInfo, "front/color/camera_info", IMAGE_QOS)
    proc = start(spawn, robot=str(profile), device=str(video), loop="true")
    wait_for(lambda: len(images) >= 5 and len(infos) >= 5, 60, "images")
    out = stop(proc)
    msg = images[-1][1]
    assert (msg.encoding, msg.width, msg.height) == ("bgr8", 160, 120)
    assert np.all(np.abs(image_to_array(msg)[5, 5].astype(int) - [0, 0, 255]) < 30)
    info = infos[-1][1]
    assert (info.width, info.height) == (160, 120) and not any(info.k), "no calibration: K = 0"
    warning = [line for line in out.splitlines() if "asked" in line]
    assert len(warning) == 1 and "asked 320x240@30" in warning[0] and "gives 160x120@30 MJPG" in warning[0], out


@pytest.mark.parametrize(
    "device, expected",
    [("/dev/video77", "camera device /dev/video77 not found (video devices: "), ("missing.avi", "neither a camera")],
)
def test_missing_device_is_one_line_error(spawn, tmp_path, device, expected):
    proc = start(spawn, robot="so101", camera="front", device=device)
    out, _ = proc.communicate(timeout=60)
    errors = [line for line in out.splitlines() if "error" in line]
    assert proc.returncode == 2, out
    assert len(errors) == 1 and expected in errors[0], out
    assert "Traceback" not in out


def test_stream_url_is_stamped_at_grab_and_reopened_when_it_ends(ros, spawn, tmp_path):
    """A URL source (here a short MJPG served over HTTP on localhost) behaves like a live camera:
    host-time stamps at grab, and the node reopens the stream each time it stops delivering."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    write_video(tmp_path / "live.avi", 10)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    images = ros.collect(Image, "front/color/image_raw", IMAGE_QOS)
    diagnostics = ros.collect(DiagnosticArray, "/diagnostics")

    def reconnects() -> int:
        values = [{kv.key: kv.value for kv in s.values} for _, m in diagnostics for s in m.status]
        return max([int(v.get("reconnects", 0)) for v in values if v.get("kind") == "url"], default=0)

    try:
        proc = start(spawn, robot="so101", camera="front", width=W, height=H, reconnect_period=0.3,
                     device=f"http://127.0.0.1:{server.server_address[1]}/live.avi")
        wait_for(lambda: reconnects() >= 2 and len(images) >= 3 or proc.poll() is not None, 60, "two reopenings")
        out = stop(proc)
    finally:
        server.shutdown()
    assert reconnects() >= 2, out
    assert "stopped delivering frames; reopening every 0.3 s" in out
    wall = np.array([t for t, _ in images]) - time.monotonic() + time.time()
    stamps = np.array([to_sec(m.header.stamp) for _, m in images])
    assert np.all(stamps <= wall + 1e-3) and np.all(wall - stamps < 0.5), "stamped with the host time at grab"
    assert {m.encoding for _, m in images} == {"rgb8"}
