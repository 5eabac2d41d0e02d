"""Camera latency as the drivers see it: driver stamps against the cell's exposure times.

An IP camera's driver stamps a frame when it arrives; the cell knows when each frame was exposed
(the stream's ``X-Timestamp``). ``StreamTap`` reads a camera stream beside the driver and keeps
every frame's exposure time with a small crop of its pixels; ``stamp_delays`` finds, for each image
the driver published, the streamed frame it shows (nearest crop; sensor noise makes every frame
unique) and returns ``driver stamp - exposure time`` per image.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections import deque

import cv2
import numpy as np

CROP = 48
"""Side of the centre crop compared, px."""


def centre_crop(image: np.ndarray) -> np.ndarray:
    """A (CROP, CROP) gray float crop of an RGB/BGR/gray image's centre."""
    gray = image if image.ndim == 2 else image.mean(axis=2)
    h, w = gray.shape
    y, x = (h - CROP) // 2, (w - CROP) // 2
    return gray[y: y + CROP, x: x + CROP].astype(np.float32)


class StreamTap:
    """Reads ``url`` (MJPEG with ``X-Timestamp``) on a thread: ``frames`` holds (exposure time, crop)."""

    def __init__(self, url: str, keep: int = 2000):
        self.url = urllib.parse.urlsplit(url)
        self.frames: deque[tuple[float, np.ndarray]] = deque(maxlen=keep)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():  # reconnect after a stall (a starved host) until closed
            self._read()
            self._stop.wait(0.2)

    def _read(self) -> None:
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=10)
        try:
            conn.request("GET", self.url.path)
            reply = conn.getresponse()
            while not self._stop.is_set():
                headers = {}
                line = reply.fp.readline()
                if not line:
                    return
                if not line.startswith(b"--"):
                    continue
                while (line := reply.fp.readline().strip()):
                    key, _, value = line.decode().partition(":")
                    headers[key.strip().lower()] = value.strip()
                jpeg = reply.fp.read(int(headers["content-length"]))
                image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                if image is not None and "x-timestamp" in headers:
                    self.frames.append((float(headers["x-timestamp"]), centre_crop(image)))
        except (OSError, http.client.HTTPException, KeyError, ValueError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=6)


def stamp_delays(streamed: list[tuple[float, np.ndarray]], published: list[tuple[float, np.ndarray]],
                 max_diff: float = 2.0) -> np.ndarray:
    """``stamp - exposure`` (s) of each published (stamp, crop) matched to a streamed (exposure, crop);
    images without a clear match (mean absolute difference above ``max_diff`` levels) are left out."""
    if not streamed:
        return np.zeros(0)
    times = np.array([t for t, _ in streamed])
    crops = np.stack([c for _, c in streamed])
    delays = []
    for stamp, crop in published:
        diff = np.abs(crops - crop).mean(axis=(1, 2))
        best = int(np.argmin(diff))
        if diff[best] <= max_diff:
            delays.append(stamp - times[best])
    return np.array(delays)
