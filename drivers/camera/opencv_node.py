"""OpenCV camera node: a V4L2 camera, or a video file / URL replayed, on the contract topics.

``device`` is a V4L2 index (``0``) or path (``/dev/video2``), a video file, or a stream URL
(``rtsp://...``, ``http://...``). Live cameras negotiate ``fourcc`` (MJPG or YUYV), resolution and
frame rate, with a one-line warning when the device gives less than asked; frames are stamped
with the driver's capture time (V4L2 buffer timestamp) when it is meaningful, else the host time
at grab. Files replay paced at their own frame rate, stamped start time + media time, and restart
with ``loop:=true``. A live camera or stream that stops delivering is reopened every
``reconnect_period`` s; a stream URL that does not answer at start is reported and retried the same way.

    opencv_camera_node --ros-args -p robot:=so101 -p camera:=wrist -p device:=/dev/video2 -p fourcc:=MJPG
"""

from __future__ import annotations

import glob
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
from rclpy.node import Node

from robot_stack.camera_info import Intrinsics
from robot_stack.contract import Contract
from robot_stack.drivers.camera.publisher import CameraPublisher
from robot_stack.drivers.camera.settings import CameraOptions, camera_settings
from robot_stack.errors import UserError
from robot_stack.node import run_node
from robot_stack.node_options import read_options
from robot_stack.typed_config import field

FOURCCS = ("MJPG", "YUYV")
URL_TIMEOUTS = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 3000]
"""A stream that stalls (network, camera) fails a read after 3 s instead of blocking the node forever."""


def video_devices() -> str:
    """Connected V4L2 devices as 'path (name)', comma separated, or 'none'."""
    found = []
    for path in sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p)):
        name_file = Path("/sys/class/video4linux") / Path(path).name / "name"
        name = name_file.read_text().strip() if name_file.is_file() else "?"
        found.append(f"{path} ({name})")
    return ", ".join(found) or "none"


def fourcc_text(value: float) -> str:
    code = int(value)
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\x00") or "?"


def open_capture(device: str) -> tuple[cv2.VideoCapture, str]:
    """(capture, kind) for a device index/path ('live'), a URL ('url') or a file ('file')."""
    if device.isdigit() or device.startswith("/dev/"):
        path = f"/dev/video{device}" if device.isdigit() else device
        if not os.path.exists(path):
            raise UserError(f"camera device {path} not found (video devices: {video_devices()}); set the device parameter")
        cap = cv2.VideoCapture(int(device) if device.isdigit() else path, cv2.CAP_V4L2)
        kind = "live"
    elif "://" in device:
        cap, kind = cv2.VideoCapture(device, cv2.CAP_FFMPEG, URL_TIMEOUTS), "url"
        if not cap.isOpened():
            raise UserError(f"stream {device} does not answer (is the camera on and the URL right?)")
    else:
        if not Path(device).expanduser().is_file():
            raise UserError(f"device: {device!r} is neither a camera (video devices: {video_devices()}) nor a video file")
        cap, kind = cv2.VideoCapture(str(Path(device).expanduser())), "file"
    if not cap.isOpened():
        raise UserError(f"cannot open {device!r} with OpenCV (video devices: {video_devices()}); is it busy or not a video source?")
    return cap, kind


@dataclass(frozen=True)
class OpenCvOptions(CameraOptions):
    device: str = field("V4L2 index or /dev/video path, video file, or stream URL", default="0")
    fourcc: str = field(f"pixel format to request from a live camera: {' or '.join(FOURCCS)} (empty: driver default)",
                        default="")
    loop: bool = field("restart a video file when it ends", default=False)
    reconnect_period: float = field("seconds between reopening attempts of a live camera", default=1.0)


class OpenCvCameraNode(Node):
    """ROS node for one OpenCV camera or video replay."""

    def __init__(self, **node_kwargs: Any):
        super().__init__("opencv_camera_node", **node_kwargs)
        self.options = options = read_options(self, OpenCvOptions)
        self.settings = camera_settings(options)
        self.device, self.fourcc = options.device, options.fourcc.upper()
        self.loop, self.reconnect_period = options.loop, options.reconnect_period
        if self.fourcc and self.fourcc not in FOURCCS:
            raise UserError(f"fourcc: {self.fourcc!r} is not one of {', '.join(FOURCCS)}")
        self.state = "streaming"
        try:
            self.cap, self.kind = open_capture(self.device)
        except UserError as err:
            if "://" not in self.device:
                raise
            self.get_logger().warning(f"{self.settings.spec.name}: {err}; retrying every {self.reconnect_period:g} s")
            self.cap, self.kind, self.state = None, "url", "reconnecting"
        spec = self.settings.spec
        intrinsics = Intrinsics.load(self.settings.intrinsics) if self.settings.intrinsics else None
        if intrinsics is None:
            self.get_logger().info(f"{spec.name}: no intrinsics file: CameraInfo is uncalibrated (K = 0)")
        self.publisher = CameraPublisher(self, self.settings.profile, spec.name, qos=self.settings.qos,
                                         color_intrinsics=intrinsics)
        if self.publisher.has_depth:
            self.get_logger().warning(f"{spec.name}: the profile asks for depth, which an OpenCV camera cannot give")
        contract = Contract(self.settings.profile)
        self.diagnostics = contract.publisher(self, contract.diagnostics)

        self.reconnects = 0
        self.file_fps = 0.0
        if self.cap is not None:
            self._configure()
        self._stop = threading.Event()
        self.create_timer(1.0, self._publish_diagnostics)
        self._thread = threading.Thread(target=self._run, name="opencv_capture", daemon=True)
        self._thread.start()

    def _configure(self) -> None:
        spec, cap = self.settings.spec, self.cap
        if self.kind == "live":
            if self.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, spec.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, spec.height)
            cap.set(cv2.CAP_PROP_FPS, spec.fps)
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = cap.get(cv2.CAP_PROP_FPS)
        fourcc = fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
        if self.kind == "file":
            self.file_fps = fps if fps > 0 else spec.fps
        asked = f"{spec.width}x{spec.height}@{spec.fps:g}" + (f" {self.fourcc}" if self.fourcc else "")
        got = f"{width}x{height}@{fps:g} {fourcc}"
        short = width * height < spec.width * spec.height or (0 < fps < spec.fps - 0.5) or (self.fourcc and fourcc != self.fourcc)
        if short and self.kind != "url":
            self.get_logger().warning(f"{spec.name}: asked {asked}, {self.device} gives {got}")
        self.get_logger().info(f"{spec.name}: streaming from {self.device} ({self.kind}): {got}")

    # -- capture ---------------------------------------------------------------------------------
    def _run(self) -> None:
        if self.kind == "file":
            self._replay()
            return
        if self.cap is None:
            self._reopen(announce=False)
        while not self._stop.is_set():
            if not self.cap.grab():
                self._reopen()
                continue
            host = time.time()
            stamp = self._driver_stamp(host) if self.kind == "live" else host
            ok, frame = self.cap.retrieve()
            if ok:
                self._publish(frame, stamp)

    def _publish(self, frame, stamp: float) -> None:
        try:
            self.publisher.publish_color(frame, stamp, "bgr8")
        except Exception:
            if self.context.ok():
                raise
            self._stop.set()  # the node is shutting down under the capture thread: stop capturing

    def _driver_stamp(self, host: float) -> float:
        """V4L2 buffer timestamp (CLOCK_MONOTONIC, ms) as wall time, if it is plausible; else host time."""
        pos_ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        age = time.monotonic() - pos_ms / 1000.0
        return host - age if pos_ms > 0 and 0.0 <= age < 1.0 else host

    def _replay(self) -> None:
        start, offset, last = time.time(), 0.0, 0.0
        period = 1.0 / self.file_fps
        while not self._stop.is_set():
            if not self.cap.grab():
                if not self.loop:
                    self.get_logger().info(f"{self.settings.spec.name}: {self.device} finished (loop:=true replays it)")
                    self.state = "finished"
                    return
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                offset, last = offset + last + period, 0.0
                continue
            index = self.cap.get(cv2.CAP_PROP_POS_FRAMES) - 1
            media = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            last = media if media > 0 or index == 0 else index * period  # containers without timestamps
            stamp = start + offset + last
            if self._stop.wait(max(0.0, stamp - time.time())):
                return
            ok, frame = self.cap.retrieve()
            if ok:
                self._publish(frame, stamp)

    def _reopen(self, announce: bool = True) -> None:
        name = self.settings.spec.name
        if announce:
            self.get_logger().warning(f"{name}: {self.device} stopped delivering frames; reopening every {self.reconnect_period:g} s")
            self.cap.release()
        self.state = "reconnecting"
        while not self._stop.wait(self.reconnect_period):
            try:
                self.cap, self.kind = open_capture(self.device)
            except UserError as err:
                self.get_logger().debug(str(err))
                continue
            self._configure()
            self.reconnects += 1
            self.state = "streaming"
            self.get_logger().info(f"{name}: {self.device} is back")
            return

    def _publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

        level = DiagnosticStatus.OK if self.state != "reconnecting" else DiagnosticStatus.WARN
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        values = {"device": self.device, "kind": self.kind, "state": self.state, "reconnects": self.reconnects}
        msg.status = [self.publisher.diagnostic(level, self.state, self.device, values)]
        self.diagnostics.publish(msg)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=6.0)
        if self.cap is not None:
            self.cap.release()


def main() -> None:
    run_node(OpenCvCameraNode)


if __name__ == "__main__":
    main()
