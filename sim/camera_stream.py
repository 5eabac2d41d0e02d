"""CameraStream: the twin's cameras, rendered off the control thread and published like a driver's.

The control loop hands over, at each tick where cameras are due, the capture time and a state
snapshot (``submit``); a render thread poses a ``CameraRig`` from the snapshot, renders each due
camera into a reused buffer and publishes it through ``CameraPublisher`` (the class every camera
driver publishes with: same topics, encodings, CameraInfo and rate statistics), stamped with the
capture time. Rendering releases the GIL, so the control loop runs meanwhile.

``lossless=True`` (the twin on sim time): ``submit`` waits while the queue is full, and a camera's
next frame is published only once every subscriber acknowledged its last one (reliable QoS;
``ACK_TIMEOUT_S`` at most; the next frame renders meanwhile), so sim time never runs ahead of
what the renderer and the subscribers (a recorder, a policy) take in, and no frame is dropped on
the way. ``lossless=False`` (real time): when the renderer falls behind,
the oldest waiting frames are dropped and counted (what is rendered stays fresh), and the control
loop never waits. ``drain`` waits until every
submitted frame is out (before a reset, or a lock-step gate).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from robot_stack.profile import RobotProfile
from robot_stack.sim.cameras import CameraRig

QUEUE_DEPTH = 2
"""Submitted ticks the renderer may lag behind (each tick's frames share one snapshot)."""
ACK_TIMEOUT_S = 1.0
"""Lossless: longest wait for subscribers to acknowledge a frame (a stuck one slows, never stops, the twin)."""


@dataclass
class StreamCounters:
    rendered: dict[str, int] = field(default_factory=dict)
    """Frames published, per camera."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Frames the renderer could not take (real time only), per camera."""


class CameraStream:
    def __init__(self, node: Any, model: mujoco.MjModel, profile: RobotProfile, camera_ids: dict[str, int], *,
                 lossless: bool, names: list[str] | None = None):
        """Publishers for ``names`` (default: the profile's cameras) on ``node``."""
        from robot_stack.drivers.camera.publisher import CameraPublisher

        self.names = list(profile.camera_names if names is None else names)
        self.lossless = lossless
        self.rig = CameraRig(model, profile, camera_ids, self.names)
        self.publishers = {n: CameraPublisher(node, profile, n, color_intrinsics=self.rig.intrinsics[n])
                           for n in self.names}
        self.counters = StreamCounters({n: 0 for n in self.names}, {n: 0 for n in self.names})
        self.error: str | None = None
        self._node = node
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twin-cameras", daemon=True)
        if self.names:
            self._thread.start()

    @property
    def rendered_frames(self) -> int:
        return sum(self.counters.rendered.values())

    @property
    def dropped_frames(self) -> int:
        return sum(self.counters.dropped.values())

    def submit(self, stamp: float, snapshot: dict[str, np.ndarray], names: list[str]) -> None:
        """Frames of cameras ``names`` showing ``snapshot`` (``SimRobot.snapshot()``), captured at ``stamp``."""
        item = (stamp, snapshot, names)
        while not self._stop.is_set() and self._thread.is_alive():
            if self.lossless:
                try:
                    self._queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:  # real time: the oldest waiting frames go, so what is rendered stays fresh
                try:
                    _, _, stale = self._queue.get_nowait()
                except queue.Empty:
                    continue
                self._queue.task_done()
                self._count_dropped(stale)
        self._count_dropped(names)

    def _count_dropped(self, names: list[str]) -> None:
        for name in names:
            self.counters.dropped[name] += 1

    def drain(self) -> None:
        """Wait until every submitted frame is published (lossless: and acknowledged)."""
        while self._queue.unfinished_tasks and self._thread.is_alive():
            time.sleep(0.001)
        if self.lossless:
            for publisher in self.publishers.values():
                publisher.wait_for_all_acked(ACK_TIMEOUT_S)

    def _run(self) -> None:
        buffers = {n: np.empty((s.height, s.width, 3), np.uint8) for n, s in self.rig.specs.items()}
        try:
            while not self._stop.is_set():
                try:
                    stamp, snapshot, names = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                try:
                    self.rig.load(snapshot)
                    for name in names:
                        image = self.rig.render_rgb(name, out=buffers[name])
                        publisher = self.publishers[name]
                        if self.lossless:  # the previous frame is in (delivered while this one rendered)
                            publisher.wait_for_all_acked(ACK_TIMEOUT_S)
                        publisher.publish_color(image, stamp)
                        self.counters.rendered[name] += 1
                finally:
                    self._queue.task_done()
        except Exception as err:  # noqa: BLE001 - reported through the log and diagnostics
            if not self._stop.is_set() and self._node.context.ok():  # else: shutting down
                self.error = f"{type(err).__name__}: {err}"
                self._node.get_logger().error(f"camera rendering stopped: {self.error}")
        finally:
            self.rig.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
