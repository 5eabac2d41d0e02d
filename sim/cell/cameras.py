"""The cell's cameras: exposures on the physics clock, rendered and streamed by a process of their own.

The physics loop asks ``CellCameras.due(sim_time)`` which cameras expose now (those someone is
streaming: frames nobody receives are not rendered) and hands their state snapshot to ``submit``,
which sends it to the camera process (raw float64 bytes over a pipe). The camera process builds the
same scene from the same cell file (``build_cell_scene``), renders each snapshot
(``sim.cameras.CameraRig``), passes it through the camera's ``Optics`` and JPEG encoder into its
``FrameChannel`` (latency, jitter, drops) and serves the channels as MJPEG. A renderer still busy
when the next exposure comes misses it (counted as ``missed``): the delivered rate falls below the
configured fps, as on a camera whose host cannot keep up.

Rendering gets its own process (and session) because it is by far the cell's largest CPU cost: in
the physics process it delayed the servo bus's replies (up to ~0.3 s on a loaded 2-core host, enough
for the driver to declare a servo silent); apart, the bus answers within its usual few ms. The camera
process exits when the cell's end of the pipe closes, however the cell ends.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile
from robot_stack.sim.cell.config import CellConfig
from robot_stack.sim.cell.mjpeg import FrameChannel, MjpegServer

STATS_PERIOD = 0.5
"""Seconds between the camera process's statistics (rates, delays, viewers) sent to the cell."""
START_TIMEOUT = 120.0


class CellCameras:
    """The cell's side: schedules exposures and feeds the camera process."""

    def __init__(self, config: CellConfig, cameras: str, seed: int, profile: RobotProfile):
        self.config, self.cameras, self.seed, self.profile = config, cameras, seed, profile
        self.names = profile.camera_names
        self.next_exposure = {name: 0.0 for name in self.names}
        self.latest: dict[str, dict[str, Any]] = {}
        self._conn = self._process = None
        self._send_lock = threading.Lock()

    def start(self, host: str, port: int) -> dict[str, str]:
        """Start the camera process serving on ``host:port`` (0: a free port); returns camera -> URL."""
        if not self.names:
            return {}
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=serve_cameras, args=(child, self.config, self.cameras, self.seed, host, port),
                                    name="cell-cameras", daemon=True)
        self._process.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT):
            raise UserError(f"the cell's camera process did not start within {START_TIMEOUT:.0f} s")
        reply = json.loads(self._conn.recv_bytes())
        if "error" in reply:
            raise UserError(reply["error"])
        threading.Thread(target=self._receive, name="cell-camera-stats", daemon=True).start()
        return {name: f"http://{host}:{reply['port']}/{name}.mjpg" for name in self.names}

    def _receive(self) -> None:
        try:
            while True:
                self.latest = json.loads(self._conn.recv_bytes())
        except (EOFError, OSError, TypeError):  # TypeError: the pipe was closed under the call (close())
            return

    def due(self, sim_time: float) -> list[str]:
        """Cameras exposing at ``sim_time`` (each at its fps, on the simulation clock) that someone streams."""
        names = [n for n in self.names if sim_time + 1e-9 >= self.next_exposure[n]]
        for name in names:
            period = 1.0 / self.profile.camera(name).fps
            self.next_exposure[name] = max(self.next_exposure[name] + period, sim_time + 0.5 * period)
        return [n for n in names if self.latest.get(n, {}).get("viewers", 0) > 0]

    def submit(self, capture: float, snapshot: dict[str, np.ndarray], names: list[str]) -> None:
        """Exposures of ``names`` at wall time ``capture`` of the state ``snapshot``."""
        mask = sum(1 << self.names.index(n) for n in names)
        data = np.concatenate([[capture, mask], snapshot["qpos"], snapshot["mocap_pos"].ravel(),
                               snapshot["mocap_quat"].ravel()])
        try:
            with self._send_lock:
                self._conn.send_bytes(data.astype(np.float64).tobytes())
        except (OSError, ValueError):
            pass  # the camera process is gone: its stats say so

    def stats(self) -> dict[str, dict[str, Any]]:
        alive = self._process is not None and self._process.is_alive()
        return {name: {**self.latest.get(name, {}), "running": alive} for name in self.names}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the camera process ends when its pipe does
        if self._process is not None:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()


class _Renderer:
    """The camera process's side: optics, channels and the render thread for one scene."""

    def __init__(self, scene) -> None:  # a CellScene
        from robot_stack.sim.cameras import camera_intrinsics
        from robot_stack.sim.cell.optics import Optics

        self.model, self.profile, self.ids = scene.sim.model, scene.profile, scene.sim.camera_ids
        self.names = self.profile.camera_names
        gap, rng = scene.gap.camera, scene.optics_rng
        self.optics, self.channels = {}, {}
        for name in self.names:
            ideal = camera_intrinsics(self.model, self.ids[name], self.profile.camera(name))
            self.optics[name] = Optics(gap, ideal, np.random.default_rng(rng.integers(1 << 31)))
            self.channels[name] = FrameChannel(gap.latency_ms / 1000, gap.jitter_ms / 1000, gap.drop_rate,
                                               np.random.default_rng(rng.integers(1 << 31)))
        self.missed = {name: 0 for name in self.names}
        self.render_ms: deque[float] = deque(maxlen=200)
        self.error = ""
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.stop = threading.Event()

    def submit(self, data: bytes) -> None:
        values = np.frombuffer(data, dtype=np.float64)
        m = self.model
        capture, mask = float(values[0]), int(values[1])
        names = [n for i, n in enumerate(self.names) if mask >> i & 1]
        q, rest = values[2: 2 + m.nq], values[2 + m.nq:]
        snapshot = {"qpos": q, "mocap_pos": rest[: 3 * m.nmocap].reshape(-1, 3),
                    "mocap_quat": rest[3 * m.nmocap:].reshape(-1, 4)}
        try:
            self.queue.put_nowait((capture, snapshot, names))
        except queue.Full:
            for name in names:
                self.missed[name] += 1

    def stats(self) -> dict[str, dict[str, Any]]:
        ms = float(np.median(self.render_ms)) if self.render_ms else 0.0
        out = {}
        for name in self.names:
            cam = self.profile.camera(name)
            out[name] = {**self.channels[name].stats(), "missed": self.missed[name], "render_ms_median": round(ms, 1),
                         "fps": cam.fps, "width": cam.width, "height": cam.height,
                         "viewers": self.channels[name].viewers, **({"error": self.error} if self.error else {})}
        return out

    def run(self) -> None:
        from robot_stack.sim.cameras import CameraRig

        rig = None
        try:
            rig = CameraRig(self.model, self.profile, self.ids)
            while not self.stop.is_set():
                try:
                    capture, snapshot, names = self.queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                start = time.perf_counter()
                rig.load(snapshot)
                for name in names:
                    optics = self.optics[name]
                    self.channels[name].push(capture, optics.encode(optics.apply(rig.render_rgb(name))))
                self.render_ms.append(1000 * (time.perf_counter() - start) / len(names))
        except Exception as err:  # noqa: BLE001 - reported in the stats (the harness state, the cell's status line)
            self.error = f"{type(err).__name__}: {err}"
        finally:
            if rig is not None:
                rig.close()


def serve_cameras(conn, config: CellConfig, cameras: str, seed: int, host: str, port: int) -> None:
    """The camera process: render what the cell sends, serve MJPEG, report statistics; ends with the pipe."""
    from robot_stack.sim.cell.scene import build_cell_scene

    os.setsid()  # a scheduling group of its own: rendering never delays the servo bus
    try:
        renderer = _Renderer(build_cell_scene(config, cameras, seed))
        server = MjpegServer(renderer.channels, host, port)
    except (UserError, OSError) as err:
        conn.send_bytes(json.dumps({"error": f"cell cameras: {getattr(err, 'strerror', None) or err}"}).encode())
        return
    server.start()
    conn.send_bytes(json.dumps({"port": server.port}).encode())
    threading.Thread(target=renderer.run, name="cell-render", daemon=True).start()

    def report() -> None:
        while not renderer.stop.wait(STATS_PERIOD):
            try:
                conn.send_bytes(json.dumps(renderer.stats()).encode())
            except (OSError, ValueError):
                return

    threading.Thread(target=report, name="cell-camera-stats", daemon=True).start()
    try:
        while True:
            renderer.submit(conn.recv_bytes())
    except (EOFError, OSError):
        pass  # the cell is gone
    finally:
        renderer.stop.set()
        server.close()
