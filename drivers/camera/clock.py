"""Device clock -> host clock: the offset is a running minimum of (host receive time - device time).

Transport delay is always positive, so the smallest observed difference over a sliding window is
the best estimate of the clock offset (it tracks slow drift as old samples leave the window). A
difference far above the current minimum means the device clock jumped (reset, wrap-around,
reconnect): the estimate restarts from that sample.
"""

from __future__ import annotations

from collections import deque


class ClockOffset:
    def __init__(self, window: float = 10.0, jump: float = 1.0):
        self.window = window
        self.jump = jump
        self._samples: deque[tuple[float, float]] = deque()  # (host time, difference), differences increasing
        self.resets = 0

    @property
    def ready(self) -> bool:
        return bool(self._samples)

    @property
    def offset(self) -> float:
        """Current estimate of host - device, seconds."""
        if not self._samples:
            raise RuntimeError("no samples yet")
        return self._samples[0][1]

    def update(self, device_s: float, host_s: float) -> float:
        """Add one frame (device timestamp, host receive time); return the offset estimate."""
        diff = host_s - device_s
        if self._samples and diff > self._samples[0][1] + self.jump:
            self._samples.clear()
            self.resets += 1
        # monotonic deque: drop samples that can never be the minimum again
        while self._samples and self._samples[-1][1] >= diff:
            self._samples.pop()
        self._samples.append((host_s, diff))
        while self._samples[0][0] < host_s - self.window and len(self._samples) > 1:
            self._samples.popleft()
        return self._samples[0][1]

    def to_host(self, device_s: float) -> float:
        return device_s + self.offset
