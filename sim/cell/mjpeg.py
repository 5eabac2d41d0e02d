"""The cell's cameras as IP cameras: MJPEG over HTTP (``multipart/x-mixed-replace``) on 127.0.0.1.

``GET /<camera>.mjpg`` streams one camera, each part a JPEG with ``Content-Length`` and, as
mjpg-streamer sends it, ``X-Timestamp`` (the exposure time, wall clock). Drivers read the stream
with OpenCV (FFmpeg) like any IP camera; OpenCV does not expose part headers, so the driver stamps
frames when they arrive, as it would a real IP camera.

``FrameChannel`` is the delay line between exposure and delivery: each frame becomes available
``latency`` (+ a non-negative jitter) after its exposure, never before it is encoded and never
before the previous one; a fraction ``drop_rate`` is never delivered.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

BOUNDARY = "robotstackframe"


@dataclass(frozen=True)
class Frame:
    seq: int
    capture: float
    """Exposure time (wall clock, s)."""
    release: float
    """When the camera delivers it (wall clock, s)."""
    jpeg: bytes


class FrameChannel:
    """One camera's frames on their way out (thread-safe)."""

    def __init__(self, latency: float = 0.0, jitter: float = 0.0, drop_rate: float = 0.0,
                 rng: np.random.Generator | None = None):
        self.latency, self.jitter, self.drop_rate = latency, jitter, drop_rate
        self.rng = rng if rng is not None else np.random.default_rng()
        self.cond = threading.Condition()
        self.frames: deque[Frame] = deque(maxlen=32)
        self.seq = 0
        self.captured = self.dropped = 0
        self.viewers = 0
        """Clients streaming this camera now (nobody watching: nothing needs rendering)."""
        self._last_release = 0.0
        self._log: deque[tuple[float, float]] = deque(maxlen=300)  # (capture, release) of delivered frames

    def push(self, capture: float, jpeg: bytes) -> None:
        """A frame exposed at ``capture`` (wall clock), encoded now."""
        with self.cond:
            self.captured += 1
            if self.drop_rate and self.rng.random() < self.drop_rate:
                self.dropped += 1
                return
            delay = self.latency + (abs(self.rng.normal(0.0, self.jitter)) if self.jitter else 0.0)
            release = max(capture + delay, time.time(), self._last_release)
            self._last_release = release
            self.seq += 1
            self.frames.append(Frame(self.seq, capture, release, jpeg))
            self._log.append((capture, release))
            self.cond.notify_all()

    def next_frame(self, after: int, timeout: float) -> Frame | None:
        """The oldest delivered frame newer than sequence number ``after`` (waits up to ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                newer = [f for f in self.frames if f.seq > after]
                wait = deadline - time.monotonic()
                if newer:
                    now = time.time()
                    if newer[0].release <= now:
                        return newer[0]
                    wait = min(wait, newer[0].release - now)
                if deadline - time.monotonic() <= 0:
                    return None
                self.cond.wait(max(wait, 0.0005))

    def stats(self) -> dict[str, float]:
        """Delivered rate (Hz, last ~2 s), exposure-to-delivery delay (median, std; ms), counters."""
        with self.cond:
            log = list(self._log)
            captured, dropped = self.captured, self.dropped
        now = time.time()
        released = [r for _, r in log if now - 2.0 <= r <= now]
        rate = (len(released) - 1) / (released[-1] - released[0]) if len(released) > 1 and released[-1] > released[0] else 0.0
        delays = np.array([r - c for c, r in log if r <= now]) * 1000
        return {"rate_hz": round(rate, 2), "captured": captured, "dropped": dropped,
                "delay_ms_median": round(float(np.median(delays)), 1) if delays.size else 0.0,
                "delay_ms_std": round(float(np.std(delays)), 1) if delays.size else 0.0}


class MjpegServer:
    """Serves ``/<name>.mjpg`` for every channel on ``host:port`` (port 0: any free port)."""

    def __init__(self, channels: dict[str, FrameChannel], host: str = "127.0.0.1", port: int = 0):
        self.channels = channels
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # http.server's name
                name = self.path.split("?")[0].strip("/").removesuffix(".mjpg")
                channel = server.channels.get(name)
                if channel is None or not self.path.split("?")[0].endswith(".mjpg"):
                    known = ", ".join(f"/{n}.mjpg" for n in server.channels) or "none"
                    self.send_error(404, f"no stream {self.path} (streams: {known})")
                    return
                last = channel.seq  # a new viewer starts with the next frame
                with channel.cond:
                    channel.viewers += 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                    self.send_header("Cache-Control", "no-cache")
                    self.end_headers()
                    while not server.closing.is_set():
                        frame = channel.next_frame(last, timeout=0.5)
                        if frame is None:
                            continue
                        last = frame.seq
                        head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
                                f"X-Timestamp: {frame.capture:.6f}\r\n\r\n").encode()
                        self.wfile.write(head + frame.jpeg + b"\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    return  # the viewer went away
                finally:
                    with channel.cond:
                        channel.viewers -= 1

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = host, int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg", daemon=True)

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}.mjpg"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.closing.set()
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
