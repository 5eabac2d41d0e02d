"""Device clock -> host clock: the offset is a running minimum of (host receive time - device time).

Transport delay is always positive, so the smallest observed difference over a sliding window is
the best estimate of the clock offset (it tracks slow drift as old samples leave the window).

The estimate restarts when the device clock jumps: at once when device time runs backwards by more
than ``backstep`` seconds (reset, wrap-around, reconnect; the frames of a device's sensors arrive
interleaved, a frame or two out of order, which is not a jump), and when every difference for ``confirm`` seconds of host time stays more
than ``jump`` above the minimum (the device clock stalled). A host stall alone (frames delivered
late in a burst) never restarts it: the burst's later frames come back down to the minimum.
"""

from __future__ import annotations

from collections import deque


class ClockOffset:
    def __init__(self, window: float = 10.0, jump: float = 1.0, confirm: float = 2.0, backstep: float = 0.5):
        self.window = window
        self.backstep = backstep
        self.jump = jump
        self.confirm = confirm
        self._samples: deque[tuple[float, float]] = deque()  # (host time, difference), differences increasing
        self._above: list[tuple[float, float]] = []  # consecutive samples more than `jump` above the minimum
        self._last_device: float | None = None
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

    def _restart(self, samples: list[tuple[float, float]]) -> None:
        self._samples.clear()
        self._above = []
        self.resets += 1
        for host_s, diff in samples:
            self._push(host_s, diff)

    def _push(self, host_s: float, diff: float) -> None:
        while self._samples and self._samples[-1][1] >= diff:  # can never be the minimum again
            self._samples.pop()
        self._samples.append((host_s, diff))
        while self._samples[0][0] < host_s - self.window and len(self._samples) > 1:
            self._samples.popleft()

    def update(self, device_s: float, host_s: float) -> float:
        """Add one frame (device timestamp, host receive time); return the offset estimate."""
        diff = host_s - device_s
        backwards = self._last_device is not None and device_s < self._last_device - self.backstep
        self._last_device = device_s if backwards or self._last_device is None else max(self._last_device, device_s)
        if backwards:
            self._restart([(host_s, diff)])
        elif self._samples and diff > self._samples[0][1] + self.jump:
            self._above.append((host_s, diff))
            if host_s - self._above[0][0] >= self.confirm:
                self._restart(self._above)
        else:
            self._above = []
            self._push(host_s, diff)
        return self._samples[0][1]

    def to_host(self, device_s: float) -> float:
        return device_s + self.offset
