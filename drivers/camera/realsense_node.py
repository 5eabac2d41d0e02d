"""RealSense camera node: color and depth from pyrealsense2 on the contract topics.

One node serves one profile camera from one device (run one node per camera for several
cameras, each with its ``serial``). Sources: a connected device (``serial``, or the only one
connected) or a recording (``bag``: a .bag or .db3 file written by the RealSense SDK). Frames are
stamped at capture: device (hardware clock) timestamps are mapped to ROS time with a running
estimate of the clock offset, reported in the log and on ``/diagnostics``. Depth is optionally
aligned to color (``align_depth``) and published as 16UC1 mm or 32FC1 m, as the profile says.
Intrinsics come from the device unless a calibration YAML is given. On unplug (or no frames for
``frame_timeout`` s) the node closes the device and retries every ``reconnect_period`` s.

    realsense_node --ros-args -p robot:=so101 -p camera:=front -p serial:="'123456789'"
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node

from robot_stack.camera_info import Intrinsics
from robot_stack.contract import Contract
from robot_stack.drivers.camera.clock import ClockOffset
from robot_stack.drivers.camera.publisher import CameraPublisher
from robot_stack.drivers.camera.settings import CameraOptions, CameraSettings, camera_settings
from robot_stack.errors import UserError
from robot_stack.node import run_node
from robot_stack.node_options import Quoted, read_options
from robot_stack.typed_config import field


def import_realsense() -> Any:
    try:
        import pyrealsense2 as rs
    except ImportError as err:
        hint = " (install the system library: apt-get install libusb-1.0-0)" if "libusb" in str(err) else ""
        raise UserError(f"cannot load pyrealsense2: {err}{hint}") from None
    return rs


# -- devices ---------------------------------------------------------------------------------------
def describe(device: Any) -> str:
    rs = import_realsense()
    info = [device.get_info(k) if device.supports(k) else "?" for k in (rs.camera_info.name, rs.camera_info.serial_number)]
    return f"{info[0]} (serial {info[1]})"


def find_device(devices: list[Any], serial: str) -> Any:
    """The device with ``serial`` (or the only device when ``serial`` is empty); one-line error otherwise."""
    rs = import_realsense()
    found = ", ".join(describe(d) for d in devices) or "none"
    if serial:
        for device in devices:
            if device.supports(rs.camera_info.serial_number) and device.get_info(rs.camera_info.serial_number) == serial:
                return device
        raise UserError(f"no RealSense device with serial {serial!r} (connected: {found}); check the serial parameter and the USB cable")
    if not devices:
        raise UserError("no RealSense device connected (connected: none); plug in a camera or give a recording with bag:=<file>")
    if len(devices) > 1:
        raise UserError(f"several RealSense devices connected ({found}): choose one with the serial parameter")
    return devices[0]


def to_intrinsics(intr: Any, name: str = "") -> Intrinsics:
    """pyrealsense2 intrinsics -> Intrinsics (Brown-Conrady -> plumb_bob, Kannala-Brandt -> equidistant)."""
    rs = import_realsense()
    K = np.array([[intr.fx, 0.0, intr.ppx], [0.0, intr.fy, intr.ppy], [0.0, 0.0, 1.0]])
    if intr.model in (rs.distortion.kannala_brandt4, rs.distortion.ftheta):
        return Intrinsics(intr.width, intr.height, K, np.asarray(intr.coeffs[:4]), "equidistant", camera_name=name)
    coeffs = np.zeros(5) if intr.model == rs.distortion.none else np.asarray(intr.coeffs[:5])
    return Intrinsics(intr.width, intr.height, K, coeffs, "plumb_bob", camera_name=name)


@dataclass(frozen=True)
class StreamRequest:
    stream: Any
    width: int
    height: int
    fps: int
    formats: tuple[Any, ...]
    """Acceptable formats, preferred first."""


def select_profile(device: Any, request: StreamRequest) -> tuple[Any, Any]:
    """(sensor, video stream profile) matching the request; one-line error listing the device's modes."""
    modes = []
    for fmt in request.formats:
        for sensor in device.query_sensors():
            for profile in sensor.get_stream_profiles():
                if profile.stream_type() != request.stream or not profile.is_video_stream_profile():
                    continue
                video = profile.as_video_stream_profile()
                modes.append(f"{video.width()}x{video.height()}@{video.fps()} {str(video.format()).split('.')[-1]}")
                if (video.width(), video.height(), video.fps(), video.format()) == (request.width, request.height, request.fps, fmt):
                    return sensor, video
    stream = str(request.stream).split(".")[-1]
    raise UserError(
        f"{describe(device)} has no {stream} mode {request.width}x{request.height}@{request.fps} "
        f"(modes: {', '.join(sorted(set(modes))) or 'none'}); change the profile camera or the width/height/fps parameters"
    )


class RealSenseStreams:
    """The color (+ depth) streams of one device, started into one frame queue."""

    def __init__(self, device: Any, color: StreamRequest, depth: StreamRequest | None):
        self.device = device
        self.color_sensor, self.color_profile = select_profile(device, color)
        self.depth_sensor, self.depth_profile = select_profile(device, depth) if depth else (None, None)
        self.queue: Any = None
        self._open: list[Any] = []

    def start(self, queue: Any) -> None:
        self.queue = queue
        by_sensor: dict[int, tuple[Any, list[Any]]] = {}
        for sensor, profile in ((self.color_sensor, self.color_profile), (self.depth_sensor, self.depth_profile)):
            if sensor is not None:
                by_sensor.setdefault(id(sensor), (sensor, []))[1].append(profile)
        for sensor, profiles in by_sensor.values():
            sensor.open(profiles if len(profiles) > 1 else profiles[0])
            self._open.append(sensor)
            sensor.start(queue)

    def stop(self) -> None:
        for sensor in self._open:
            for step in (sensor.stop, sensor.close):
                try:
                    step()
                except RuntimeError:
                    pass  # already stopped, or the device is gone
        self._open.clear()


# -- node ------------------------------------------------------------------------------------------
FORMATS = {"rgb8": ("rgb8", "bgr8"), "bgr8": ("bgr8", "rgb8"), "mono8": ("y8", "rgb8")}


@dataclass(frozen=True)
class RealSenseOptions(CameraOptions):
    serial: Quoted = field("device serial number, quoted (empty: the only connected device)", default="")
    bag: str = field("play a RealSense recording (.bag / .db3) instead of a device", default="")
    loop: bool = field("restart the recording when it ends", default=False)
    align_depth: bool = field("align depth to the color image (depth then uses the color intrinsics)", default=True)
    depth_width: int = field("depth width, px (0: the color width)", default=0)
    depth_height: int = field("depth height, px (0: the color height)", default=0)
    frame_timeout: float = field("seconds without frames before the device counts as lost", default=2.0)
    reconnect_period: float = field("seconds between reconnection attempts", default=1.0)


class RealSenseNode(Node):
    """ROS node for one RealSense camera. ``device`` bypasses discovery (tests: a software device)."""

    def __init__(self, *, device: Any = None, **node_kwargs: Any):
        super().__init__("realsense_node", **node_kwargs)
        self.rs = rs = import_realsense()
        self.options = options = read_options(self, RealSenseOptions)
        self.settings: CameraSettings = camera_settings(options)
        self.serial, self.bag, self.loop, self.align_depth = options.serial, options.bag, options.loop, options.align_depth
        depth_width, depth_height = options.depth_width, options.depth_height
        self.frame_timeout, self.reconnect_period = options.frame_timeout, options.reconnect_period
        if self.serial and self.bag:
            raise UserError("give either serial or bag, not both")

        spec = self.settings.spec
        if spec.fps != int(spec.fps):
            raise UserError(f"camera {spec.name!r}: RealSense frame rates are whole numbers, got fps {spec.fps}")
        self.color_request = StreamRequest(rs.stream.color, spec.width, spec.height, int(spec.fps),
                                           tuple(getattr(rs.format, f) for f in FORMATS[spec.encoding]))
        self.depth_request = (
            StreamRequest(rs.stream.depth, depth_width or spec.width, depth_height or spec.height, int(spec.fps), (rs.format.z16,))
            if spec.depth else None
        )
        self.publisher = CameraPublisher(self, self.settings.profile, spec.name, qos=self.settings.qos)
        contract = Contract(self.settings.profile)
        self.diagnostics = contract.publisher(self, contract.diagnostics)

        self.rs_context = rs.context()
        self._injected = device
        self.streams: RealSenseStreams | None = None
        self.clock = ClockOffset()
        self._lock = threading.Lock()
        self._removed = threading.Event()
        self._stop = threading.Event()
        self._last_color: Any = None
        self._last_frame = time.monotonic()
        self._offset_logged = False
        self.reconnects = 0
        self.state = "starting"
        self.device_name = ""

        self._connect()  # a missing device or mode is a UserError at start-up
        self.rs_context.set_devices_changed_callback(self._devices_changed)
        self._align = rs.align(rs.stream.color)
        self._pair: dict[str, Any] = {}
        self._framesets = rs.frame_queue(2, keep_frames=True)
        self._composer = rs.processing_block(self._compose)
        self._composer.start(self._framesets)
        self.create_timer(1.0, self._publish_diagnostics)
        self._thread = threading.Thread(target=self._run, name="realsense_capture", daemon=True)
        self._thread.start()

    # -- device lifecycle ----------------------------------------------------------------------
    def _open_device(self) -> Any:
        if self._injected is not None:
            return self._injected
        if self.bag:
            path = Path(self.bag).expanduser()
            if not path.is_file():
                raise UserError(f"bag: recording {path} not found")
            try:
                self.rs_context.unload_device(str(path))
            except RuntimeError:
                pass
            try:
                device = self.rs_context.load_device(str(path))
            except RuntimeError as err:
                raise UserError(f"bag: cannot play {path} (not a RealSense recording?): {err}") from None
            device.as_playback().set_real_time(True)
            return device
        return find_device(list(self.rs_context.query_devices()), self.serial)

    def _connect(self) -> None:
        device = self._open_device()
        streams = RealSenseStreams(device, self.color_request, self.depth_request)
        rs = self.rs
        name = self.settings.spec.name
        if self.settings.intrinsics is not None:
            color = Intrinsics.load(self.settings.intrinsics)
            depth = color if self.align_depth else None
        else:
            color = to_intrinsics(streams.color_profile.get_intrinsics(), name)
            depth = None
        if streams.depth_profile is not None and depth is None:
            depth = color if self.align_depth else to_intrinsics(streams.depth_profile.get_intrinsics(), name)
        self.publisher.color_intrinsics, self.publisher.depth_intrinsics = color, depth
        self.publisher.depth_frame_id = self.settings.spec.frame_id if self.align_depth else f"{name}_depth_optical_frame"
        self._queue = rs.frame_queue(8, keep_frames=True)
        self._removed.clear()
        streams.start(self._queue)
        with self._lock:
            self.streams = streams
        self._last_frame = time.monotonic()
        self.device_name = describe(device)
        source = f"recording {self.bag}" if self.bag else self.device_name
        modes = f"color {self.color_request.width}x{self.color_request.height}@{self.color_request.fps}"
        if self.depth_request:
            modes += f", depth {self.depth_request.width}x{self.depth_request.height} ({'aligned' if self.align_depth else 'unaligned'})"
        log = self.get_logger().debug if self.bag and self.state == "replaying" else self.get_logger().info
        log(f"{name}: streaming from {source}: {modes}")
        self.state = "streaming"

    def _disconnect(self) -> None:
        with self._lock:
            streams, self.streams = self.streams, None
        if streams is not None:
            streams.stop()
        self._last_color = None
        self._pair.clear()

    def _devices_changed(self, info: Any) -> None:
        with self._lock:
            device = self.streams.device if self.streams else None
        if device is not None and self._injected is None and not self.bag and info.was_removed(device):
            self._removed.set()

    def _lost(self, why: str) -> None:
        self.get_logger().warning(f"{self.settings.spec.name}: {why}; reconnecting every {self.reconnect_period:g} s")
        self.state = f"reconnecting ({why})"
        self._disconnect()
        while not self._stop.wait(self.reconnect_period):
            try:
                self._connect()
            except (UserError, RuntimeError) as err:
                self.get_logger().debug(f"reconnect failed: {err}")
                continue
            self.reconnects += 1
            self.clock = ClockOffset()
            self._offset_logged = False
            self.get_logger().info(f"{self.settings.spec.name}: reconnected to {self.device_name}")
            return

    # -- capture ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            if self._removed.is_set():
                self._lost("device unplugged")
                continue
            ok, frame = self._queue.try_wait_for_frame(200)
            if not ok:
                if self.bag and self._playback_finished():
                    continue
                if time.monotonic() - self._last_frame > self.frame_timeout:
                    self._lost(f"no frames for {self.frame_timeout:g} s")
                continue
            self._last_frame = time.monotonic()
            try:
                self._handle(frame, time.time())
            except Exception as err:  # noqa: BLE001 - one bad frame must not stop the camera
                self.get_logger().error(f"dropped a frame: {err}", throttle_duration_sec=5.0)

    def _playback_finished(self) -> bool:
        with self._lock:
            device = self.streams.device if self.streams else None
        if device is None or device.as_playback().current_status() != self.rs.playback_status.stopped:
            return False
        if self.loop:
            self._disconnect()
            self.state = "replaying"
            try:
                self._connect()
            except (UserError, RuntimeError) as err:
                self._lost(f"cannot replay {self.bag}: {err}")
            return True
        if self.state != "finished":
            self.get_logger().info(f"{self.settings.spec.name}: recording {self.bag} finished (loop:=true replays it)")
            self.state = "finished"
        self._stop.wait(0.2)
        return True

    def _stamp(self, frame: Any, host: float) -> float:
        rs = self.rs
        device_s = frame.get_timestamp() / 1000.0
        offset = self.clock.update(device_s, host)
        if not self._offset_logged and self.publisher.color.frames >= 30:
            self._offset_logged = True
            self.get_logger().info(
                f"{self.settings.spec.name}: clock offset host - device = {offset * 1e3:.3f} ms "
                f"({str(frame.get_frame_timestamp_domain()).split('.')[-1]} timestamps)"
            )
        # system/global-time timestamps are already host time; device clocks and recordings are mapped
        if frame.get_frame_timestamp_domain() == rs.timestamp_domain.hardware_clock or self.bag:
            return device_s + offset
        return device_s

    def _handle(self, frame: Any, host: float) -> None:
        rs = self.rs
        stamp = self._stamp(frame, host)
        stream = frame.get_profile().stream_type()
        if stream == rs.stream.color:
            self._last_color = frame
            fmt = str(frame.get_profile().format()).split(".")[-1]
            source = {"rgb8": "rgb8", "bgr8": "bgr8", "y8": "mono8"}[fmt]
            self.publisher.publish_color(np.asanyarray(frame.get_data()), stamp, source)
        elif stream == rs.stream.depth:
            depth = frame.as_depth_frame()
            if self.align_depth:
                if self._last_color is None:
                    return  # nothing to align to yet
                depth = self._aligned(depth)
            self.publisher.publish_depth(np.asanyarray(depth.get_data()), stamp, depth.get_units())

    def _compose(self, _frame: Any, source: Any) -> None:
        source.frame_ready(source.allocate_composite_frame([self._pair["depth"], self._pair["color"]]))

    def _aligned(self, depth: Any) -> Any:
        """Depth re-projected into the color camera (rs.align) using the latest color frame's geometry."""
        self._pair["depth"], self._pair["color"] = depth, self._last_color
        self._composer.invoke(depth)
        frameset = self._framesets.wait_for_frame(1000).as_frameset()
        return self._align.process(frameset).get_depth_frame()

    # -- status ----------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

        level = DiagnosticStatus.OK if self.state in ("streaming", "finished") else DiagnosticStatus.WARN
        offset = f"{self.clock.offset * 1e3:.3f}" if self.clock.ready else "unknown"
        values = {"device": self.device_name, "source": self.bag or self.serial or "auto", "state": self.state,
                  "clock_offset_ms": offset, "reconnects": self.reconnects}
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.publisher.diagnostic(level, self.state, self.device_name, values)]
        self.diagnostics.publish(msg)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=3.0)
        self._disconnect()
        if self.bag:
            try:
                self.rs_context.unload_device(str(Path(self.bag).expanduser()))
            except RuntimeError:
                pass


def main() -> None:
    run_node(RealSenseNode)


if __name__ == "__main__":
    main()
