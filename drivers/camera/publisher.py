"""Publish one profile camera: color (+ depth) Image and CameraInfo on the contract topics.

Generic over the image source (RealSense, OpenCV, the MuJoCo twin): callers hand over numpy arrays
and the capture time, and this helper converts them to the profile's encodings, stamps image and
CameraInfo alike, and keeps per-stream rate statistics for diagnostics.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_stack.camera_info import Intrinsics
from robot_stack.contract import Contract, Topic
from robot_stack.convert import array_to_image, to_stamp
from robot_stack.profile import RobotProfile

COLOR_ORDERS = ("rgb8", "bgr8", "mono8")


def convert_color(image: np.ndarray, source: str, encoding: str) -> np.ndarray:
    """A uint8 image in ``source`` channel order ('rgb8', 'bgr8', 'mono8') -> ``encoding``."""
    if source == encoding:
        return image
    import cv2

    codes = {
        ("rgb8", "bgr8"): cv2.COLOR_RGB2BGR, ("bgr8", "rgb8"): cv2.COLOR_BGR2RGB,
        ("rgb8", "mono8"): cv2.COLOR_RGB2GRAY, ("bgr8", "mono8"): cv2.COLOR_BGR2GRAY,
        ("mono8", "rgb8"): cv2.COLOR_GRAY2RGB, ("mono8", "bgr8"): cv2.COLOR_GRAY2BGR,
    }
    return cv2.cvtColor(image, codes[(source, encoding)])


def convert_depth(depth: np.ndarray, encoding: str, scale: float = 0.001) -> np.ndarray:
    """Depth -> REP-118 ``16UC1`` (mm, 0 = invalid) or ``32FC1`` (m, NaN = invalid).

    Integer input is in device units of ``scale`` metres (RealSense z16); float input is metres.
    """
    if depth.dtype.kind in "ui":
        if encoding == "16UC1" and depth.dtype == np.uint16 and abs(scale - 0.001) < 1e-9:
            return depth
        metres = depth.astype(np.float32) * np.float32(scale)
        metres[depth == 0] = np.nan
    else:
        metres = depth.astype(np.float32, copy=False)
    if encoding == "32FC1":
        return np.where(metres > 0, metres, np.float32(np.nan)).astype(np.float32, copy=False)
    mm = np.nan_to_num(metres * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.rint(mm), 0, 65535).astype(np.uint16)


def scale_intrinsics(intr: Intrinsics, width: int, height: int) -> Intrinsics:
    """Intrinsics calibrated at another resolution, rescaled to ``width`` x ``height``."""
    if (intr.width, intr.height) == (width, height):
        return intr
    s = np.diag([width / intr.width, height / intr.height, 1.0])
    return Intrinsics(width, height, s @ intr.K, intr.D, intr.distortion_model, intr.R, s @ intr.P, intr.camera_name)


def uncalibrated(width: int, height: int) -> Intrinsics:
    """CameraInfo of a camera without calibration: K = 0 (the ROS convention for 'uncalibrated')."""
    return Intrinsics(width, height, np.zeros((3, 3)), np.zeros(0), P=np.zeros((3, 4)))


@dataclass
class StreamStats:
    frames: int = 0
    last_host: float = 0.0
    _times: deque = field(default_factory=lambda: deque(maxlen=61))

    def add(self, host: float) -> None:
        self.frames += 1
        self.last_host = host
        self._times.append(host)

    @property
    def rate(self) -> float:
        """Measured frame rate over the last ~2 s (Hz)."""
        t = [x for x in self._times if x > time.monotonic() - 2.0]
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0


class CameraPublisher:
    """Publishers for one profile camera (``Contract(profile).camera(name)``)."""

    def __init__(
        self,
        node: Any,
        profile: RobotProfile,
        camera: str,
        *,
        qos: Any = None,
        color_intrinsics: Intrinsics | None = None,
        depth_intrinsics: Intrinsics | None = None,
        depth_frame_id: str | None = None,
    ):
        self.node = node
        self.spec = profile.camera(camera)
        self.topics = Contract(profile).camera(camera)
        self.color_intrinsics = color_intrinsics
        self.depth_intrinsics = depth_intrinsics
        self.depth_frame_id = depth_frame_id or f"{self.spec.name}_depth_optical_frame"
        self.color = StreamStats()
        self.depth = StreamStats()

        def pub(topic: Topic | None) -> Any:
            return None if topic is None else node.create_publisher(topic.type, topic.name, qos or topic.qos)

        self._image, self._info = pub(self.topics.image), pub(self.topics.info)
        self._depth, self._depth_info = pub(self.topics.depth), pub(self.topics.depth_info)

    @property
    def has_depth(self) -> bool:
        return self._depth is not None

    def publish_color(self, image: np.ndarray, stamp: float, source: str = "rgb8") -> None:
        """Publish a color image captured at ``stamp`` (s, ROS time); ``source`` is its channel order."""
        array = convert_color(image, source, self.spec.encoding)
        frame_id = self.spec.frame_id
        ros_stamp = to_stamp(stamp)
        self._image.publish(array_to_image(array, self.spec.encoding, ros_stamp, frame_id))
        self._info.publish(self._camera_info(self.color_intrinsics, array, frame_id, ros_stamp))
        self.color.add(time.monotonic())

    def publish_depth(self, depth: np.ndarray, stamp: float, scale: float = 0.001, frame_id: str | None = None) -> None:
        """Publish depth captured at ``stamp``: integers in units of ``scale`` m, or float metres."""
        if self._depth is None:
            return
        array = convert_depth(depth, self.spec.depth_encoding, scale)
        frame_id = frame_id or self.depth_frame_id
        ros_stamp = to_stamp(stamp)
        self._depth.publish(array_to_image(array, self.spec.depth_encoding, ros_stamp, frame_id))
        self._depth_info.publish(self._camera_info(self.depth_intrinsics, array, frame_id, ros_stamp))
        self.depth.add(time.monotonic())

    def wait_for_all_acked(self, timeout_s: float) -> bool:
        """Block until every subscriber acknowledged the published messages (reliable QoS), or ``timeout_s``."""
        from rclpy.duration import Duration

        timeout = Duration(seconds=timeout_s)
        pubs = [p for p in (self._image, self._info, self._depth, self._depth_info) if p is not None]
        return all([p.wait_for_all_acked(timeout) for p in pubs])

    @staticmethod
    def _camera_info(intr: Intrinsics | None, array: np.ndarray, frame_id: str, stamp: Any) -> Any:
        height, width = array.shape[:2]
        intr = uncalibrated(width, height) if intr is None else scale_intrinsics(intr, width, height)
        return intr.to_msg(frame_id, stamp)

    def diagnostic(self, level: Any, message: str, hardware_id: str, values: dict[str, Any]) -> Any:
        """A DiagnosticStatus (``level``: DiagnosticStatus.OK/WARN/ERROR) with the rate statistics added."""
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        stats = {"color_rate_hz": f"{self.color.rate:.1f}", "color_frames": str(self.color.frames)}
        if self.has_depth:
            stats |= {"depth_rate_hz": f"{self.depth.rate:.1f}", "depth_frames": str(self.depth.frames)}
        status = DiagnosticStatus(level=level, name=f"{self.node.get_name()}: {self.spec.name}",
                                  message=message, hardware_id=hardware_id)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in (values | stats).items()]
        return status
