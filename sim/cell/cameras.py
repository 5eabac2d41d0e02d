"""The cell's cameras: exposures on the physics clock, rendered on a thread of their own.

The physics loop asks ``due(sim_time)`` which cameras expose now (those someone streams) and hands
their state snapshot to ``submit``; the render thread renders it (``sim.cameras.CameraRig``), passes it through the camera's
``Optics`` and JPEG encoder, and pushes it into the camera's ``FrameChannel`` (latency, jitter,
drops) that the MJPEG server reads. A renderer still busy with the previous exposure misses the
next one (counted as ``missed``): the delivered rate then falls below the configured fps, as it
does on a camera whose host cannot keep up.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque

import mujoco
import numpy as np

from robot_stack.profile import RobotProfile
from robot_stack.sim.cameras import camera_intrinsics
from robot_stack.sim.cell.config import CameraGap
from robot_stack.sim.cell.mjpeg import FrameChannel
from robot_stack.sim.cell.optics import Optics

RENDER_NICE = 5


class CellCameras:
    def __init__(self, model: mujoco.MjModel, profile: RobotProfile, camera_ids: dict[str, int], gap: CameraGap,
                 rng: np.random.Generator):
        self.model, self.profile, self.camera_ids = model, profile, camera_ids
        self.names = profile.camera_names
        self.optics: dict[str, Optics] = {}
        self.channels: dict[str, FrameChannel] = {}
        for name in self.names:
            ideal = camera_intrinsics(model, camera_ids[name], profile.camera(name))
            self.optics[name] = Optics(gap, ideal, np.random.default_rng(rng.integers(1 << 31)))
            self.channels[name] = FrameChannel(gap.latency_ms / 1000, gap.jitter_ms / 1000, gap.drop_rate,
                                               np.random.default_rng(rng.integers(1 << 31)))
        self.next_exposure = {name: 0.0 for name in self.names}
        self.missed = {name: 0 for name in self.names}
        self.render_ms: deque[float] = deque(maxlen=200)
        self.error: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cell-render", daemon=True)

    def due(self, sim_time: float) -> list[str]:
        """Cameras exposing at ``sim_time`` (each at its profile fps, on the simulation clock) that someone
        is streaming: frames nobody receives are not rendered."""
        names = [n for n in self.names if sim_time + 1e-9 >= self.next_exposure[n]]
        for name in names:
            period = 1.0 / self.profile.camera(name).fps
            self.next_exposure[name] = max(self.next_exposure[name] + period, sim_time + 0.5 * period)
        return [n for n in names if self.channels[n].viewers > 0]

    def submit(self, capture: float, snapshot: dict[str, np.ndarray], names: list[str]) -> None:
        """Exposures of ``names`` at wall time ``capture`` of the state ``snapshot`` (never blocks)."""
        try:
            self._queue.put_nowait((capture, snapshot, names))
        except queue.Full:
            for name in names:
                self.missed[name] += 1

    def start(self) -> None:
        if self.names:
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def stats(self) -> dict[str, dict]:
        ms = float(np.median(self.render_ms)) if self.render_ms else 0.0
        return {name: {**self.channels[name].stats(), "missed": self.missed[name], "render_ms_median": round(ms, 1),
                       "fps": self.profile.camera(name).fps, "width": self.profile.camera(name).width,
                       "height": self.profile.camera(name).height} for name in self.names}

    def _loop(self) -> None:
        from robot_stack.sim.cameras import CameraRig

        # Rendering takes whatever CPU is left: the servo bus (the arm's timing) comes first. The
        # renderer's own threads (Mesa llvmpipe) are created below and inherit this priority.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RENDER_NICE)
        rig = None
        try:
            rig = CameraRig(self.model, self.profile, self.camera_ids)
            while not self._stop.is_set():
                try:
                    capture, snapshot, names = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                start = time.perf_counter()
                rig.load(snapshot)
                for name in names:
                    optics = self.optics[name]
                    jpeg = optics.encode(optics.apply(rig.render_rgb(name)))
                    self.channels[name].push(capture, jpeg)
                self.render_ms.append(1000 * (time.perf_counter() - start) / len(names))
        except Exception as err:  # noqa: BLE001 - reported by the cell's status and log
            self.error = f"{type(err).__name__}: {err}"
        finally:
            if rig is not None:
                rig.close()
