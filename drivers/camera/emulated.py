"""An emulated RealSense camera: the SDK's own ``software_device`` fed with synthetic frames.

Frames go through the real librealsense pipeline (sensors, frame queues, rs.align, the recorder),
so the RealSense node can be tested, benchmarked and demonstrated without hardware. Color frame k
has every pixel ``(k % 256, 255 - k % 256, 7)`` (RGB) and depth frame k is ``depth_mm + k`` mm;
timestamps are hardware-clock ms starting at ``start_ms``.

    cam = EmulatedRealSense(serial="123456")
    record_bag(cam, "demo.db3", frames=90)    # a recording the node plays with bag:=demo.db3
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EmulatedIntrinsics:
    fx: float = 615.0
    fy: float = 616.0
    ppx: float = 319.5
    ppy: float = 241.25
    coeffs: tuple[float, ...] = (0.1, -0.05, 0.001, 0.002, 0.01)


class EmulatedRealSense:
    def __init__(
        self,
        serial: str = "000000000001",
        name: str = "Intel RealSense D435 (emulated)",
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        color_format: str = "rgb8",
        depth: bool = True,
        depth_units: float = 0.001,
        depth_mm: int = 1000,
        intrinsics: EmulatedIntrinsics = EmulatedIntrinsics(),
        start_ms: float = 5_000_000.0,
    ):
        import pyrealsense2 as rs

        self.rs = rs
        self.width, self.height, self.fps = width, height, fps
        self.depth_units, self.depth_mm, self.start_ms = depth_units, depth_mm, start_ms
        self.late_ms: dict[int, float] = {}
        """Per frame number, how late ``stream`` injected it: its device time runs on by as much, as a real
        device's clock keeps pace with the wall clock however late a frame is delivered."""
        self.intrinsics = intrinsics
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.name, name)
        self.device.register_info(rs.camera_info.serial_number, serial)
        self.color_sensor = self.device.add_sensor("RGB Camera")
        fmt = getattr(rs.format, color_format)
        bpp = {"rgb8": 3, "bgr8": 3, "y8": 1}[color_format]
        self.color_profile = self.color_sensor.add_video_stream(self._stream(rs.stream.color, 1, fmt, bpp))
        self.color_bpp = bpp
        self.depth_sensor = self.depth_profile = None
        if depth:
            self.depth_sensor = self.device.add_sensor("Stereo Module")
            self.depth_profile = self.depth_sensor.add_video_stream(self._stream(rs.stream.depth, 0, rs.format.z16, 2))
            self.depth_sensor.add_read_only_option(rs.option.depth_units, depth_units)
            extrinsics = rs.extrinsics()
            extrinsics.rotation = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
            extrinsics.translation = [0.015, 0.0, 0.0]
            self.depth_profile.register_extrinsics_to(self.color_profile, extrinsics)
        self.frame_number = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _stream(self, stream: Any, uid: int, fmt: Any, bpp: int) -> Any:
        rs = self.rs
        intr = rs.intrinsics()
        intr.width, intr.height = self.width, self.height
        intr.fx, intr.fy, intr.ppx, intr.ppy = self.intrinsics.fx, self.intrinsics.fy, self.intrinsics.ppx, self.intrinsics.ppy
        intr.model = rs.distortion.brown_conrady
        intr.coeffs = list(self.intrinsics.coeffs)
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid = stream, 0, uid
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = self.width, self.height, self.fps, bpp, fmt
        vs.intrinsics = intr
        return vs

    def color_pixel(self, k: int) -> tuple[int, int, int]:
        return (k % 256, 255 - k % 256, 7)

    def timestamp_ms(self, k: int) -> float:
        return self.start_ms + k * 1000.0 / self.fps + self.late_ms.get(k, 0.0)

    def inject(self) -> int:
        """Push the next color (+ depth) frame into the device; returns its frame number."""
        rs = self.rs
        self.frame_number += 1
        k = self.frame_number
        color = np.empty((self.height, self.width, self.color_bpp), np.uint8)
        color[:] = self.color_pixel(k)[: self.color_bpp]
        frames = [(self.color_sensor, self.color_profile, color, self.color_bpp)]
        if self.depth_sensor is not None:
            depth = np.full((self.height, self.width), self.depth_mm + k, np.uint16)
            frames.insert(0, (self.depth_sensor, self.depth_profile, depth, 2))
        for sensor, profile, pixels, bpp in frames:
            frame = rs.software_video_frame()
            frame.pixels = pixels
            frame.bpp, frame.stride = bpp, self.width * bpp
            frame.timestamp = self.timestamp_ms(k)
            frame.domain = rs.timestamp_domain.hardware_clock
            frame.frame_number = k
            frame.profile = profile.as_video_stream_profile()
            if bpp == 2:
                frame.depth_units = self.depth_units
            sensor.on_video_frame(frame)
        return k

    def stream(self, frames: int | None = None) -> None:
        """Inject frames at the camera's rate in a background thread (``frames``: stop after that many)."""
        self._stop.clear()

        def run() -> None:
            start, n = time.monotonic(), 0
            while not self._stop.is_set() and (frames is None or n < frames):
                self.late_ms[self.frame_number + 1] = max(0.0, time.monotonic() - start - n / self.fps) * 1000.0
                self.inject()
                n += 1
                self._stop.wait(max(0.0, start + n / self.fps - time.monotonic()))

        self._thread = threading.Thread(target=run, name="emulated_realsense", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def record_bag(camera: EmulatedRealSense, path: str | Path, frames: int) -> Path:
    """Record ``frames`` frames of ``camera`` with the SDK's recorder (.db3; .bag needs an older SDK)."""
    rs = camera.rs
    path = Path(path)
    recorder = rs.recorder(str(path), camera.device)
    queue = rs.frame_queue(4 * frames, keep_frames=True)
    sensors = recorder.query_sensors()
    for sensor in sensors:
        sensor.open(sensor.get_stream_profiles())
        sensor.start(queue)
    start = time.monotonic()
    for n in range(frames):  # real-time pacing: the recorder stores arrival times, playback replays them
        camera.inject()
        time.sleep(max(0.0, start + (n + 1) / camera.fps - time.monotonic()))
    time.sleep(0.2)
    for sensor in sensors:
        sensor.stop()
        sensor.close()
    del sensors, recorder  # the recorder writes the file out when released
    return path
